"""Convolutional blocks shared by the generative models (GIN of notebook 01, autoencoders of 02-04).

Both families work at s x s pixels (s divisible by 4) with two stride-2 stages: s -> s/2 -> s/4 and back.
"""

from __future__ import annotations

from torch import nn


def conv_trunk(in_channels: int, width: int) -> nn.Sequential:
    """s x s -> (2*width, s/4, s/4) by two strided 4x4 convs, flattened.

    No batch-norm, so an output never depends on the rest of its batch (the codes of an encoder; the gradient
    penalty of a WGAN critic, which is computed per image).
    """
    return nn.Sequential(
        nn.Conv2d(in_channels, width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
        nn.Conv2d(width, 2 * width, 4, 2, 1), nn.LeakyReLU(0.2, inplace=True),
        nn.Flatten(),
    )


def deconv_trunk(in_channels: int, width: int, out_channels: int, batchnorm: bool = False) -> nn.Sequential:
    """(in_channels, s/4, s/4) -> (out_channels, s, s) by two strided 4x4 transposed convs; no output activation.

    batchnorm=True is the DCGAN generator's choice (the GIN); the autoencoders' decoders use none.
    """
    hidden = [nn.ConvTranspose2d(in_channels, width, 4, 2, 1, bias=not batchnorm)]
    hidden += [nn.BatchNorm2d(width)] if batchnorm else []
    return nn.Sequential(*hidden, nn.ReLU(inplace=True), nn.ConvTranspose2d(width, out_channels, 4, 2, 1))
