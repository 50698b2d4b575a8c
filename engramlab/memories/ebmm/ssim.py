"""SSIM (Wang, Bovik, Sheikh & Simoncelli 2004) for the SSIM+MSE loss of papers/001.

Gaussian window (size 11, σ = 1.5; shrunk to the largest odd size that fits small images), valid
convolution, C1 = (0.01·L)², C2 = (0.03·L)² with L the dynamic range; the mean SSIM map per image.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def gaussian_window(size: int, sigma: float, like: Tensor) -> Tensor:
    """(size, size) normalised Gaussian window, on ``like``'s device and dtype."""
    r = torch.arange(size, device=like.device, dtype=like.dtype) - (size - 1) / 2
    g = torch.exp(-(r**2) / (2 * sigma**2))
    g = g / g.sum()
    return g[:, None] * g[None, :]


def ssim(x: Tensor, y: Tensor, data_range: float = 1.0, window: int = 11, sigma: float = 1.5) -> Tensor:
    """Mean SSIM per image: x, y (M, C, H, W) -> (M,), channels averaged."""
    size = min(window, x.shape[-1], x.shape[-2])
    size -= 1 - size % 2
    c = x.shape[1]
    w = gaussian_window(size, sigma, x).expand(c, 1, size, size)

    def blur(t: Tensor) -> Tensor:
        return F.conv2d(t, w, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return s.flatten(1).mean(1)
