"""Models: classifiers here; generative models in their own files."""

from latentlab.models.classifiers import SmallCNN, build_classifier, mc_dropout, resnet18_28

__all__ = ["SmallCNN", "build_classifier", "mc_dropout", "resnet18_28"]
from latentlab.models.autoencoder import AEConfig, ConvAutoencoder, ConvVAE, fit_autoencoder  # noqa: F401
