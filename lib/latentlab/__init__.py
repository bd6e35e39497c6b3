"""latentlab: latent-space synthesis and selection of training data for scarce medical labels."""

from latentlab._compat import patch_torchvision

patch_torchvision()

__version__ = "0.1.0"
