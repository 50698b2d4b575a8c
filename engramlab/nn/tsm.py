"""Temporal Shift Module and the TSM-ResNet18 episode encoder (Lin et al. 2019; Kanerva++ §3.3, App. E).

Inside every residual block, 1/8 of the channels are shifted one frame forward in time and 1/8 one
frame backward (zeros enter at the episode's ends), so the embedding of frame t sees frames t−1 and
t+1. Frames are the T patterns of an episode; the batch dimension is episodes.

Example::

    enc = TSMResNet18(in_channels=1, width=16)
    e = enc(episode)                          # (B, T, 1, 28, 28) -> (B, T, enc.out_dim)
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from engramlab.errors import BadConfig, BadInput


def temporal_shift(x: Tensor, frames: int, fold_div: int = 8) -> Tensor:
    """Shift channels across frames: (B·T, C, H, W) -> same shape.

    Channels [0, C/fold_div) of frame t take frame t−1's values (shift forward in time), channels
    [C/fold_div, 2C/fold_div) take frame t+1's (shift backward); the rest stay. Zero-padded.
    """
    bt, c = x.shape[:2]
    if bt % frames:
        raise BadInput(f"temporal_shift: leading size {bt} is not a multiple of the {frames} frames")
    fold = c // fold_div
    v = x.reshape(bt // frames, frames, *x.shape[1:])
    out = torch.zeros_like(v)
    out[:, 1:, :fold] = v[:, :-1, :fold]  # forward: frame t gets t-1
    out[:, :-1, fold : 2 * fold] = v[:, 1:, fold : 2 * fold]  # backward: frame t gets t+1
    out[:, :, 2 * fold :] = v[:, :, 2 * fold :]
    return out.reshape_as(x)


def _norm(kind: str, channels: int) -> nn.Module:
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    groups = next(g for g in (8, 4, 2, 1) if channels % g == 0)
    return nn.GroupNorm(groups, channels)


class TSMBasicBlock(nn.Module):
    """ResNet basic block with a temporal shift on the residual branch's input (TSM "residual shift")."""

    def __init__(self, cin: int, cout: int, stride: int, norm: str, shift: bool, fold_div: int = 8):
        super().__init__()
        self.shift, self.fold_div = shift, fold_div
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = _norm(norm, cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = _norm(norm, cout)
        self.skip = (
            nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), _norm(norm, cout))
            if stride != 1 or cin != cout
            else nn.Identity()
        )

    def forward(self, x: Tensor, frames: int) -> Tensor:
        h = temporal_shift(x, frames, self.fold_div) if self.shift else x
        h = torch.relu(self.bn1(self.conv1(h)))
        h = self.bn2(self.conv2(h))
        return torch.relu(h + self.skip(x))


class TSMResNet18(nn.Module):
    """ResNet18 (4 stages × 2 basic blocks, widths w, 2w, 4w, 8w) with temporal shift in each block.

    For small images the stem is a 3×3 stride-1 convolution (no max-pool); stages 2–4 halve the
    resolution, so inputs need H, W >= 8. ``width=64`` is ResNet18's; smaller widths for CPU runs.
    ``norm="batch"`` follows the paper (App. E); "group" avoids batch statistics across episodes.

    Input (B, T, C, H, W) -> (B, T, 8·width) after global average pooling.
    """

    def __init__(
        self,
        in_channels: int,
        width: int = 64,
        norm: Literal["batch", "group"] = "batch",
        shift: bool = True,
        fold_div: int = 8,
    ):
        super().__init__()
        if width < 8 or in_channels < 1:
            raise BadConfig(f"TSMResNet18 needs width >= 8 and in_channels >= 1, got {width}, {in_channels}")
        self.in_channels, self.shift = in_channels, shift
        self.stem = nn.Sequential(nn.Conv2d(in_channels, width, 3, 1, 1, bias=False), _norm(norm, width), nn.ReLU())
        blocks, cin = [], width
        for i, cout in enumerate([width, 2 * width, 4 * width, 8 * width]):
            blocks += [
                TSMBasicBlock(cin, cout, 1 if i == 0 else 2, norm, shift, fold_div),
                TSMBasicBlock(cout, cout, 1, norm, shift, fold_div),
            ]
            cin = cout
        self.blocks = nn.ModuleList(blocks)
        self.out_dim = cin

    def forward(self, x: Tensor) -> Tensor:
        if x.dim() != 5 or x.shape[2] != self.in_channels:
            raise BadInput(f"TSMResNet18 needs (B, T, {self.in_channels}, H, W) episodes, got {tuple(x.shape)}")
        b, t = x.shape[:2]
        if self.shift and t < 2:
            raise BadInput(f"the TSM encoder shifts features across frames: episode length must be >= 2, got T={t}")
        if min(x.shape[-2:]) < 8:
            raise BadInput(f"the TSM-ResNet18 encoder needs images of at least 8×8, got {tuple(x.shape[-2:])}")
        h = self.stem(x.reshape(b * t, *x.shape[2:]))
        for block in self.blocks:
            h = block(h, t)
        return h.mean((-2, -1)).reshape(b, t, -1)
