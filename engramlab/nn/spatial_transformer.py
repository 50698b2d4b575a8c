"""Differentiable crops of a memory tensor with a spatial transformer (Kanerva++ App. A, Eq. 8–9).

A key y = (s, x, y) ∈ R³ is the affine map θ = [[s, 0, x], [0, s, y]] from output to input
coordinates on the [-1, 1] square (centre 0): the crop covers the window of half-width s centred
at (x, y) — x along the width, y along the height. The crop is read by bilinear interpolation
(``affine_grid`` + ``grid_sample``, align_corners=False), so it is differentiable in both the
memory and the key. With s = 1/2 and x = y = ±1/2 on an even-sized memory the crop is exactly a
quadrant.

Example::

    blocks = crop(memory, keys, (16, 16))   # (B, C, H, W), (B, N, 3) -> (B, N, C, 16, 16)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from engramlab.errors import BadInput


def affine_from_keys(keys: Tensor) -> Tensor:
    """(..., 3) keys (s, x, y) -> (..., 2, 3) affine matrices θ of Eq. 8."""
    s, tx, ty = keys.unbind(-1)
    zero = torch.zeros_like(s)
    return torch.stack([torch.stack([s, zero, tx], -1), torch.stack([zero, s, ty], -1)], -2)


def check_keys_inside(keys: Tensor, tol: float = 1e-4) -> None:
    """Raise BadInput when a key's window leaves the memory: need 0 < s and |x|+s, |y|+s <= 1."""
    s, tx, ty = keys.unbind(-1)
    if not torch.isfinite(keys).all():
        raise BadInput("spatial-transformer keys contain NaN or Inf")
    if (s <= 0).any() or ((tx.abs() + s) > 1 + tol).any() or ((ty.abs() + s) > 1 + tol).any():
        raise BadInput(
            "spatial-transformer keys point outside the memory: each key (s, x, y) needs 0 < s and "
            f"|x| + s <= 1 and |y| + s <= 1; got s in [{float(s.min()):.3g}, {float(s.max()):.3g}], "
            f"max |x|+s = {float((tx.abs() + s).max()):.3g}, max |y|+s = {float((ty.abs() + s).max()):.3g}"
        )


def crop(memory: Tensor, keys: Tensor, size: tuple[int, int], check: bool = True) -> Tensor:
    """Read one block per key from each episode's memory.

    Args:
        memory: (B, C, H, W) one memory tensor per episode.
        keys: (B, N, 3) keys (s, x, y) per episode, each window inside the memory.
        size: (h, w) of every crop.
        check: raise BadInput for keys outside the memory (turn off only for keys already squashed).
    Returns:
        (B, N, C, h, w) the crops.
    """
    if memory.dim() != 4 or keys.dim() != 3 or keys.shape[-1] != 3 or keys.shape[0] != memory.shape[0]:
        raise BadInput(
            f"crop needs memory (B, C, H, W) and keys (B, N, 3); got {tuple(memory.shape)}, {tuple(keys.shape)}"
        )
    if check:
        check_keys_inside(keys)
    b, n = keys.shape[:2]
    c = memory.shape[1]
    theta = affine_from_keys(keys.reshape(b * n, 3)).to(memory.dtype)
    grid = F.affine_grid(theta, [b * n, c, size[0], size[1]], align_corners=False)
    source = memory.unsqueeze(1).expand(b, n, *memory.shape[1:]).reshape(b * n, *memory.shape[1:])
    out = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    return out.reshape(b, n, c, size[0], size[1])


def squash_keys(raw: Tensor, min_scale: float = 0.05, max_scale: float = 1.0) -> Tensor:
    """(..., 3) unconstrained keys -> keys whose windows lie inside the memory.

    s = min_scale + (max_scale − min_scale)·σ(raw_s), and each translation = (1 − s)·tanh(raw), so
    |x| + s <= 1 always; used by Kanerva++ to map reparameterised key samples (Eq. 6) to crops.
    """
    s = min_scale + (max_scale - min_scale) * torch.sigmoid(raw[..., 0])
    room = 1.0 - s
    return torch.stack([s, room * torch.tanh(raw[..., 1]), room * torch.tanh(raw[..., 2])], -1)
