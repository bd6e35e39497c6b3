"""The shared conv blocks: ImageConvTranspose2d is nn.ConvTranspose2d with another kernel, nothing else."""

import pytest
import torch
from torch import nn

from latentlab.models.blocks import ImageConvTranspose2d, deconv_trunk


@pytest.mark.parametrize("cin,cout,k,s,p,size,bias,channels_last", [
    (32, 1, 4, 2, 1, 14, True, True), (16, 3, 4, 2, 1, 7, True, False), (8, 2, 3, 1, 0, 5, False, False),
    (4, 1, 5, 3, 2, 6, True, True)])
def test_image_conv_transpose_matches_torch_in_outputs_and_gradients(cin, cout, k, s, p, size, bias, channels_last):
    torch.manual_seed(0)
    ref = nn.ConvTranspose2d(cin, cout, k, s, p, bias=bias)
    ours = ImageConvTranspose2d(cin, cout, k, s, p, bias=bias)
    ours.load_state_dict(ref.state_dict())  # same parameters, same names
    x = torch.randn(5, cin, size, size)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = ref(xa), ours(xb)
    assert ya.shape == yb.shape
    torch.testing.assert_close(yb, ya, rtol=1e-5, atol=1e-5)
    g = torch.randn_like(ya)
    (ya * g).sum().backward()
    (yb * g).sum().backward()
    torch.testing.assert_close(xb.grad, xa.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ours.weight.grad, ref.weight.grad, rtol=1e-4, atol=1e-4)
    if bias:
        torch.testing.assert_close(ours.bias.grad, ref.bias.grad, rtol=1e-4, atol=1e-4)


def test_image_conv_transpose_refuses_what_its_kernel_does_not_compute():
    with pytest.raises(ValueError, match="output_padding"):
        ImageConvTranspose2d(4, 1, 4, 2, 1, output_padding=1)
    with pytest.raises(ValueError, match="groups"):
        ImageConvTranspose2d(4, 2, 4, 2, 1, groups=2)


def test_deconv_trunk_keeps_the_state_dict_layout_of_plain_transposed_convs():
    trunk = deconv_trunk(8, 4, 1)
    plain = nn.Sequential(nn.ConvTranspose2d(8, 4, 4, 2, 1), nn.ReLU(), nn.ConvTranspose2d(4, 1, 4, 2, 1))
    assert {k: v.shape for k, v in trunk.state_dict().items()} == {k: v.shape for k, v in plain.state_dict().items()}
    assert trunk(torch.randn(2, 8, 7, 7)).shape == (2, 1, 28, 28)
