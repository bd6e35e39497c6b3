"""Convolutional blocks shared by the generative models (GIN of notebook 01, autoencoders of 02-04).

Both families work at s x s pixels (s divisible by 4) with two stride-2 stages: s -> s/2 -> s/4 and back.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
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
    return nn.Sequential(*hidden, nn.ReLU(inplace=True), ImageConvTranspose2d(width, out_channels, 4, 2, 1))


class ImageConvTranspose2d(nn.ConvTranspose2d):
    """The transposed conv that paints the image (1-3 output channels), computed from its definition: every input
    pixel scatters its value times the kernel into a k x k patch of the output (one matmul), and overlapping patches
    add up (F.fold, col2im).

    The same layer as nn.ConvTranspose2d (same parameters and state_dict, same outputs and gradients up to float
    rounding, tested); only the kernel differs. On a CPU thread oneDNN's transposed conv with one output channel
    runs about 3x slower than this (`make bench-train`).
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.groups != 1 or self.dilation != (1, 1) or self.output_padding != (0, 0):
            raise ValueError("ImageConvTranspose2d supports groups=1, dilation=1 and output_padding=0 only.")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        patches = x.permute(0, 2, 3, 1).reshape(n, h * w, c) @ self.weight.flatten(1)  # (N, HW, C_out * k * k)
        size = tuple((i - 1) * s - 2 * p + k for i, s, p, k in zip((h, w), self.stride, self.padding, self.kernel_size))
        out = F.fold(patches.transpose(1, 2), size, self.kernel_size, stride=self.stride, padding=self.padding)
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)
