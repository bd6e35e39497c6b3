"""Classifiers: a small CNN with dropout, the MedMNIST ResNet-18 for 28px, and MC dropout."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from torch import nn

import latentlab  # noqa: F401  (torchvision shim first)


class SmallCNN(nn.Module):
    """Two conv blocks and a dropout MLP head: fast on a CPU, with dropout for MC sampling."""

    def __init__(self, in_channels: int, n_classes: int, width: int = 16, dropout: float = 0.3):
        super().__init__()

        def block(c_in: int, c_out: int) -> nn.Sequential:
            return nn.Sequential(
                nn.Conv2d(c_in, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                nn.Conv2d(c_out, c_out, 3, padding=1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            )

        self.features = nn.Sequential(block(in_channels, width), block(width, 2 * width),
                                      nn.AdaptiveAvgPool2d(4))  # 4x4 at any input size >= 16px
        self.head = nn.Sequential(
            nn.Flatten(), nn.Dropout(dropout), nn.Linear(2 * width * 16, 128), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(128, n_classes),
        )

    def forward(self, x):
        return self.head(self.features(x))


def resnet18_28(in_channels: int, n_classes: int) -> nn.Module:
    """ResNet-18 as MedMNIST v2 uses it at 28px: a 3x3 stride-1 stem and no max-pool."""
    from torchvision.models import resnet18

    net = resnet18(weights=None, num_classes=n_classes)
    # At 28px the ImageNet stem (7x7 stride 2 + max-pool) would leave a 7x7 map after one block.
    net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
    net.maxpool = nn.Identity()
    return net


def build_classifier(arch: str, in_channels: int, n_classes: int, **kwargs) -> nn.Module:
    """A classifier by name: 'cnn' (SmallCNN) or 'resnet18'."""
    if arch == "cnn":
        return SmallCNN(in_channels, n_classes, **kwargs)
    if arch == "resnet18":
        return resnet18_28(in_channels, n_classes)
    raise ValueError(f"Unknown classifier {arch!r}. Choose 'cnn' or 'resnet18'.")


@contextmanager
def mc_dropout(model: nn.Module) -> Iterator[nn.Module]:
    """Dropout on, batch-norm (and everything else) in eval mode: T passes then sample the posterior."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    for m in model.modules():
        if isinstance(m, nn.modules.dropout._DropoutNd):
            m.train()
    try:
        yield model
    finally:
        for m, mode in modes.items():
            m.training = mode
