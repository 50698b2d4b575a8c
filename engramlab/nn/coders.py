"""GroupNorm + Swish convolutional encoder/decoder of the VBM models and their baselines (paper 002, App. F).

Named ``VBMEncoder`` / ``VBMDecoder`` so they do not clash with the Kanerva++ coders. The encoder maps images
(N, C, H, W) in [0, 1] (shown to the network as 2x − 1, as the official code does) to a diagonal Gaussian
q(z | x) over codes of size ``code``: (mean (N, code), variance (N, code)). The decoder maps codes (N, code)
to likelihood parameters (N, P, H, W) for any H, W that are multiples of 4 (the decoder upsamples twice and
crops). Widths are configurable; App. F's networks are wider, the quick presets use narrow ones.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from engramlab.nn.fast import OutputConv2d


def _gn(channels: int) -> nn.GroupNorm:
    groups = 8 if channels % 8 == 0 else 1
    return nn.GroupNorm(groups, channels)


def _block(cin: int, cout: int, stride: int = 1, transpose: bool = False) -> nn.Sequential:
    if transpose:
        conv = nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1)
    else:
        conv = nn.Conv2d(cin, cout, 4 if stride == 2 else 3, stride=stride, padding=1)
    return nn.Sequential(conv, _gn(cout), nn.SiLU())  # GroupNorm + Swish (App. F)


class VBMEncoder(nn.Module):
    """(N, C, H, W) images in [0, 1] -> (features (N, feat),) then a Gaussian head: mean, variance (N, code)."""

    def __init__(self, in_channels: int, image_hw: tuple[int, int], code: int, width: int = 32, min_var: float = 1e-4):
        super().__init__()
        h, w = image_hw
        self.net = nn.Sequential(
            _block(in_channels, width, 2), _block(width, 2 * width, 2), _block(2 * width, 2 * width, 1), nn.Flatten()
        )
        with torch.no_grad():
            self.features = self.net(torch.zeros(1, in_channels, h, w)).shape[-1]
        self.head = nn.Linear(self.features, 2 * code)
        self.min_var = min_var

    def embed(self, x: Tensor) -> Tensor:
        """(N, C, H, W) -> (N, features)."""
        return self.net(2 * x - 1)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        mean, raw = self.head(self.embed(x)).chunk(2, -1)
        return mean, self.min_var + nn.functional.softplus(raw)


class VBMDecoder(nn.Module):
    """(N, code) -> likelihood parameters (N, out_channels, H, W)."""

    def __init__(self, code: int, out_channels: int, image_hw: tuple[int, int], width: int = 32):
        super().__init__()
        self.hw = image_hw
        self.h0, self.w0 = (image_hw[0] + 3) // 4, (image_hw[1] + 3) // 4
        self.width = width
        self.fc = nn.Sequential(nn.Linear(code, 2 * width * self.h0 * self.w0), nn.SiLU())
        self.net = nn.Sequential(
            _block(2 * width, 2 * width, 1),
            _block(2 * width, width, transpose=True),
            _block(width, width, transpose=True),
            OutputConv2d(width, out_channels, 3, padding=1),
        )

    def forward(self, z: Tensor) -> Tensor:
        out = self.net(self.fc(z).reshape(-1, 2 * self.width, self.h0, self.w0))
        return out[..., : self.hw[0], : self.hw[1]]
