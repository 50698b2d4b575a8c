"""Corruptions that turn stored patterns into queries, vectorised over episodes and patterns.

Each corruption takes ``x`` of shape (B, T, *pattern) — images (B, T, C, H, W) or strings (B, T, d) —
(any leading dims work: everything before the pattern dims is batched), a ``torch.Generator``, and
returns ``(corrupted, mask)`` where ``mask`` is a bool tensor of x's shape, True where the value was
corrupted (selected for corruption; for additive noise, every element).

Spatial corruptions (``block``, ``mask``) act on the last two dims when the pattern has ≥2 dims
(the same square for every channel), else on the last dim as a 1-D string (a contiguous run of n,
or the first/second half).

``value_range`` (low, high) is the data range; when None it is inferred: (-1, 1) if x has a
negative value else (0, 1). Results are clamped to it where documented below.

Spec strings, parsed by ``parse_corruption``::

    "flip:p=0.1"                   bit flips: each element with prob. p is reflected, x -> low + high - x
                                   (±1 strings: sign flip; {0,1}: 1 - x); stays in range.
    "salt_pepper:p=0.1"            each element with prob. p set to low or high (½ each).
    "block:size=7,noise=gaussian"  one random size×size square per pattern replaced by noise:
                                   gaussian N(0,1) (papers/001; NOT clamped unless clamp=true),
                                   uniform U(low, high), binary {low, high} (½ each), zero (value 0).
    "gaussian:std=0.1"             x + std·N(0,1), clamped to the range (clamp=false to keep raw).
    "mask:region=bottom_half"      the region (top_half/bottom_half/left_half/right_half) set to
                                   ``fill`` (default 0).
    "speckle:std=0.2"              x + x·std·N(0,1) (multiplicative), clamped (clamp=false to keep raw).
    "poisson:scale=50"             shot noise: low + Poisson((x − low)·scale)/scale, clamped
                                   (clamp=false to keep raw); smaller scale = noisier.
    "none"                         no corruption (mask all False).

Example::

    query, mask = corrupt(patterns, "block:size=7,noise=gaussian", torch.Generator().manual_seed(0))
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from engramlab.errors import BadConfig, BadInput

Result = tuple[Tensor, Tensor]


def _range(x: Tensor, value_range: tuple[float, float] | None) -> tuple[float, float]:
    if value_range is not None:
        low, high = float(value_range[0]), float(value_range[1])
        if not low < high:
            raise BadConfig(f"value_range must have low < high, got {value_range}")
        return low, high
    return (-1.0, 1.0) if x.numel() and bool((x < 0).any()) else (0.0, 1.0)


def _check(x: Tensor) -> None:
    if not isinstance(x, Tensor) or not x.is_floating_point():
        raise BadInput(f"corruptions need a floating-point tensor, got {getattr(x, 'dtype', type(x))}")
    if x.dim() < 1 or x.numel() == 0:
        raise BadInput(f"corruptions need a non-empty tensor, got shape {tuple(x.shape)}")


def _rand(shape: tuple[int, ...], x: Tensor, generator: torch.Generator) -> Tensor:
    """Uniform [0,1) of ``shape`` drawn on the generator's device, moved to x's device/dtype."""
    return torch.rand(shape, generator=generator, device=generator.device).to(device=x.device, dtype=x.dtype)


def _randn(shape: tuple[int, ...], x: Tensor, generator: torch.Generator) -> Tensor:
    return torch.randn(shape, generator=generator, device=generator.device).to(device=x.device, dtype=x.dtype)


def _check_p(p: float, name: str = "p") -> float:
    if not 0.0 <= p <= 1.0:
        raise BadConfig(f"corruption parameter {name} must be in [0, 1], got {p}")
    return float(p)


def flip(x: Tensor, generator: torch.Generator, p: float = 0.1, value_range=None) -> Result:
    """Bit flips: each element independently with probability p becomes low + high − x."""
    _check(x)
    low, high = _range(x, value_range)
    mask = _rand(tuple(x.shape), x, generator) < _check_p(p)
    return torch.where(mask, low + high - x, x), mask


def salt_pepper(x: Tensor, generator: torch.Generator, p: float = 0.1, value_range=None) -> Result:
    """Each element with probability p is set to low or high with probability ½ each."""
    _check(x)
    low, high = _range(x, value_range)
    mask = _rand(tuple(x.shape), x, generator) < _check_p(p)
    salt = _rand(tuple(x.shape), x, generator) < 0.5
    noise = torch.where(salt, torch.full_like(x, high), torch.full_like(x, low))
    return torch.where(mask, noise, x), mask


def _pattern_dims(x: Tensor, pattern_dims: int | None) -> int:
    """Trailing pattern dims: given, else x.dim() − 2 (leading (B, T)), at least 1."""
    pd = (x.dim() - 2 if x.dim() >= 3 else 1) if pattern_dims is None else pattern_dims
    if not 1 <= pd <= x.dim():
        raise BadInput(f"pattern_dims={pd} does not fit a tensor of shape {tuple(x.shape)}")
    return pd


def _spatial_dims(x: Tensor, pattern_dims: int | None) -> int:
    """How many trailing dims the corruption treats as space: 2 (H, W) or 1 (a string)."""
    return 2 if _pattern_dims(x, pattern_dims) >= 2 else 1


def _block_mask(x: Tensor, generator: torch.Generator, size: int, pattern_dims: int | None) -> Tensor:
    """Bool mask of one random size×size square (or run of ``size``) per pattern, broadcast over channels."""
    if isinstance(size, bool) or not isinstance(size, int) or size < 1:
        raise BadConfig(f"block size must be a positive integer, got {size!r}")
    pd = _pattern_dims(x, pattern_dims)
    sd = 2 if pd >= 2 else 1
    space = tuple(x.shape[-sd:])
    if any(size > s for s in space):
        raise BadConfig(f"block size {size} exceeds the pattern's spatial size {space}")
    lead = tuple(x.shape[: x.dim() - pd])
    axes = []
    for s in space:  # one random corner per pattern along each spatial axis, uniform on 0..s-size
        corner = (_rand(lead, x, generator) * (s - size + 1)).long().clamp_(max=s - size).unsqueeze(-1)
        pos = torch.arange(s, device=x.device)
        axes.append((pos >= corner) & (pos < corner + size))  # (*lead, s)
    mask = axes[0] if sd == 1 else axes[0].unsqueeze(-1) & axes[1].unsqueeze(-2)  # (*lead, *space)
    mask = mask.reshape(*lead, *([1] * (pd - sd)), *space)
    return mask.expand(x.shape).clone()


def block(
    x: Tensor,
    generator: torch.Generator,
    size: int = 7,
    noise: str = "gaussian",
    value_range=None,
    clamp: bool = False,
    pattern_dims: int | None = None,
) -> Result:
    """Replace one random size×size square per pattern (all channels) with noise.

    noise: "gaussian" N(0,1) as in papers/001 (7×7 blocks on 28×28 Omniglot; not clamped by default),
    "uniform" U(low, high), "binary" {low, high} with ½ each, "zero" the value 0.
    """
    _check(x)
    low, high = _range(x, value_range)
    if noise not in ("gaussian", "uniform", "binary", "zero"):
        raise BadConfig(f"block noise must be gaussian, uniform, binary or zero, got {noise!r}")
    mask = _block_mask(x, generator, size, pattern_dims)
    # Noise is drawn only for the masked elements (their count is fixed: one block per pattern).
    count = (int(mask.sum()),)
    if noise == "gaussian":
        fill = _randn(count, x, generator)
    elif noise == "uniform":
        fill = low + (high - low) * _rand(count, x, generator)
    elif noise == "binary":
        fill = torch.where(_rand(count, x, generator) < 0.5, high, low).to(x.dtype)
    else:
        fill = torch.zeros(count, dtype=x.dtype, device=x.device)
    out = x.masked_scatter(mask, fill)
    return (out.clamp(low, high) if clamp else out), mask


def gaussian(x: Tensor, generator: torch.Generator, std: float = 0.1, value_range=None, clamp: bool = True) -> Result:
    """Additive Gaussian noise x + std·N(0,1), clamped to the data range unless clamp=False."""
    _check(x)
    if not 0 <= std < math.inf:  # also refuses NaN, which would make every query NaN
        raise BadConfig(f"gaussian std must be a finite number ≥ 0, got {std}")
    low, high = _range(x, value_range)
    out = x + std * _randn(tuple(x.shape), x, generator)
    out = out.clamp(low, high) if clamp else out
    return out, torch.ones_like(x, dtype=torch.bool) if std > 0 else torch.zeros_like(x, dtype=torch.bool)


def speckle(x: Tensor, generator: torch.Generator, std: float = 0.2, value_range=None, clamp: bool = True) -> Result:
    """Multiplicative noise x·(1 + std·N(0,1)), clamped to the data range unless clamp=False."""
    _check(x)
    if not 0 <= std < math.inf:
        raise BadConfig(f"speckle std must be a finite number ≥ 0, got {std}")
    low, high = _range(x, value_range)
    out = x + x * std * _randn(tuple(x.shape), x, generator)
    out = out.clamp(low, high) if clamp else out
    return out, (x != 0) if std > 0 else torch.zeros_like(x, dtype=torch.bool)


def poisson(x: Tensor, generator: torch.Generator, scale: float = 50.0, value_range=None, clamp: bool = True) -> Result:
    """Shot noise: low + Poisson((x − low)·scale)/scale (mean-preserving), clamped unless clamp=False."""
    _check(x)
    if not 0 < scale < math.inf:
        raise BadConfig(f"poisson scale must be a finite number > 0, got {scale}")
    low, high = _range(x, value_range)
    rate = ((x - low) * scale).clamp(min=0)
    if generator.device == rate.device:
        counts = torch.poisson(rate, generator=generator)
    else:  # draw on the generator's device, then move
        counts = torch.poisson(rate.to(generator.device), generator=generator).to(x.device)
    out = low + counts / scale
    out = out.clamp(low, high) if clamp else out
    return out, torch.ones_like(x, dtype=torch.bool)


REGIONS = ("top_half", "bottom_half", "left_half", "right_half")


def mask_region(
    x: Tensor,
    generator: torch.Generator | None = None,
    region: str = "bottom_half",
    fill: float = 0.0,
    pattern_dims: int | None = None,
) -> Result:
    """Set a half of every pattern to ``fill`` (deterministic; the generator is unused).

    Images: top/bottom halves split H, left/right halves split W. Strings: top/left = first half,
    bottom/right = second half. Odd sizes: the named half gets the floor(s/2) elements at its edge.
    """
    _check(x)
    if region not in REGIONS:
        raise BadConfig(f"mask region must be one of {list(REGIONS)}, got {region!r}")
    sd = _spatial_dims(x, pattern_dims)
    axis = -1 if sd == 1 or region in ("left_half", "right_half") else -2
    s = x.shape[axis]
    pos = torch.arange(s, device=x.device)
    sel = pos < s // 2 if region in ("top_half", "left_half") else pos >= s - s // 2
    shape = [1] * x.dim()
    shape[axis] = s
    mask = sel.reshape(shape).expand(x.shape).clone()
    return torch.where(mask, torch.as_tensor(fill, dtype=x.dtype, device=x.device), x), mask


def none(x: Tensor, generator: torch.Generator | None = None) -> Result:
    """No corruption: x unchanged and an all-False mask."""
    _check(x)
    return x.clone(), torch.zeros_like(x, dtype=torch.bool)


@dataclass(frozen=True)
class KindSpec:
    fn: Callable[..., Result]
    params: dict[str, type] = field(default_factory=dict)


KINDS: dict[str, KindSpec] = {
    "flip": KindSpec(flip, {"p": float}),
    "salt_pepper": KindSpec(salt_pepper, {"p": float}),
    "block": KindSpec(block, {"size": int, "noise": str, "clamp": bool}),
    "gaussian": KindSpec(gaussian, {"std": float, "clamp": bool}),
    "mask": KindSpec(mask_region, {"region": str, "fill": float}),
    "speckle": KindSpec(speckle, {"std": float, "clamp": bool}),
    "poisson": KindSpec(poisson, {"scale": float, "clamp": bool}),
    "none": KindSpec(none, {}),
}


def _convert(kind: str, key: str, text: str, tp: type) -> Any:
    try:
        if tp is bool:
            if text.lower() not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return text.lower() in ("true", "1")
        if tp is int:
            return int(text)
        if tp is float:
            return float(text)
        return text
    except ValueError as e:
        raise BadConfig(f"corruption '{kind}': parameter {key}={text!r} must be {tp.__name__}") from e


def parse_corruption(spec: str) -> tuple[str, dict[str, Any]]:
    """``"block:size=7,noise=gaussian"`` -> ``("block", {"size": 7, "noise": "gaussian"})``.

    Raises BadConfig naming an unknown kind or parameter, or a malformed value.
    """
    if not isinstance(spec, str) or not spec.strip():
        raise BadConfig(f"corruption spec must be a non-empty string like 'flip:p=0.1', got {spec!r}")
    kind, _, rest = spec.strip().partition(":")
    kind = kind.strip()
    if kind not in KINDS:
        raise BadConfig(f"unknown corruption kind '{kind}'; known kinds: {', '.join(KINDS)}")
    params: dict[str, Any] = {}
    for item in filter(None, (s.strip() for s in rest.split(","))):
        key, eq, value = item.partition("=")
        key = key.strip()
        if not eq:
            raise BadConfig(f"corruption '{kind}': parameter '{item}' must look like key=value")
        if key not in KINDS[kind].params:
            known = ", ".join(KINDS[kind].params) or "none"
            raise BadConfig(f"unknown parameter '{key}' for corruption '{kind}'; known parameters: {known}")
        params[key] = _convert(kind, key, value.strip(), KINDS[kind].params[key])
    return kind, params


def corrupt(x: Tensor, spec: str, generator: torch.Generator, value_range: tuple[float, float] | None = None) -> Result:
    """Apply the corruption named by ``spec`` to x (B, T, *pattern); returns (corrupted, mask)."""
    kind, params = parse_corruption(spec)
    if kind in ("flip", "salt_pepper", "block", "gaussian", "speckle", "poisson"):
        params["value_range"] = value_range
    return KINDS[kind].fn(x, generator, **params)
