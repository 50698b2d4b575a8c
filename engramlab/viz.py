"""Pictures: image grids of reads, metric curves with confidence bands, training curves (issue 3, item 10).

Everything draws with matplotlib's Agg backend (no display needed), closes its figure after saving,
and writes atomically (a temporary file renamed into place), so a crash never leaves half a PNG.

Example::

    image_grid(episode, queries, reads, "results/demo/grid.png", max_episodes=2)
    plot_curves(loads, {"hebbian": (mean, ci)}, "capacity.png", xlabel="T/N", ylabel="bit error",
                vline=(0.138, "0.138 N"))
    plot_training_log("runs/x/log.csv", "runs/x/curves.png")
"""

from __future__ import annotations

import csv
import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from torch import Tensor  # noqa: E402

from engramlab.errors import BadInput, DataError  # noqa: E402
from engramlab.fileio import atomic_path  # noqa: E402

__all__ = ["image_grid", "plot_curves", "plot_training_log", "sample_grid", "to_images"]


def _save(fig, path: Path | str, dpi: int = 100) -> Path:
    """Save ``fig`` atomically to ``path`` (PNG) and close it."""
    path = Path(path)
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)
    return path


def to_images(x: Tensor, value_range: tuple[float, float] | None = None) -> np.ndarray:
    """(..., *pattern) -> (..., H, W, C) float array in [0, 1] for ``imshow``.

    Pattern shapes: (C, H, W) images (C = 1 or 3); (H, W) images; (d,) vectors (binary strings)
    laid out row by row as the most square H×W with H·W ≥ d, padded with the mid value.
    ``value_range`` maps values to [0, 1]; None picks (−1, 1) if any value is negative, else (0, 1).
    Values outside the range are clipped.
    """
    x = x.detach().float().cpu()
    if value_range is None:
        value_range = (-1.0, 1.0) if bool((x < 0).any()) else (0.0, 1.0)
    low, high = value_range
    if not high > low:
        raise BadInput(f"value_range must have high > low, got {value_range}")
    x = ((x - low) / (high - low)).clamp(0, 1)
    return x.numpy()


def _layout(pattern_shape: tuple[int, ...]) -> tuple[int, int, int]:
    if len(pattern_shape) == 3 and pattern_shape[0] in (1, 3):
        return pattern_shape[1], pattern_shape[2], pattern_shape[0]
    if len(pattern_shape) == 2:
        return pattern_shape[0], pattern_shape[1], 1
    d = math.prod(pattern_shape)
    w = math.ceil(math.sqrt(d))
    return math.ceil(d / w), w, 1


def _as_hwc(x: np.ndarray, pattern_shape: tuple[int, ...]) -> np.ndarray:
    """(N, *pattern) in [0, 1] -> (N, H, W, C)."""
    H, W, C = _layout(pattern_shape)
    n = x.shape[0]
    if len(pattern_shape) == 3 and pattern_shape[0] in (1, 3):
        return x.transpose(0, 2, 3, 1)
    if len(pattern_shape) == 2:
        return x[..., None]
    flat = x.reshape(n, -1)
    padded = np.full((n, H * W), 0.5, dtype=flat.dtype)
    padded[:, : flat.shape[1]] = flat
    return padded.reshape(n, H, W, 1)


def image_grid(
    stored: Tensor,
    query: Tensor | None,
    read: Tensor | None,
    path: Path | str,
    max_episodes: int = 4,
    max_patterns: int = 8,
    value_range: tuple[float, float] | None = None,
    title: str | None = None,
    column_titles: Sequence[str] = ("stored", "query", "read"),
) -> Path:
    """Save a grid: per episode a block of columns stored | query | read, one row per pattern.

    Args:
        stored: (B, T, *pattern) the written (or target) patterns.
        query: (B, N, *pattern) corrupted queries, or None to omit the column.
        read: (B, N, *pattern) reconstructions, or None to omit the column. Row i shows
            stored[:, i], query[:, i] and read[:, i], so pass the targets as ``stored`` when the
            queries are not in episode order.
        path: where to write the PNG.
        max_episodes, max_patterns: how many episodes (blocks) and rows to show at most.
        value_range: pixel range mapped to black..white; None: (−1, 1) if any value < 0, else (0, 1).
        title: figure title.
        column_titles: titles of the three columns.

    Returns:
        The path written.
    """
    panels = [("stored", stored), ("query", query), ("read", read)]
    names = dict(zip(("stored", "query", "read"), column_titles))
    panels = [(names[n], t) for n, t in panels if t is not None]
    if not isinstance(stored, Tensor) or stored.dim() < 3:
        raise BadInput(f"image_grid: stored must be a (B, T, *pattern) tensor, got {getattr(stored, 'shape', stored)}")
    pattern_shape = tuple(stored.shape[2:])
    for name, t in panels:
        if t.dim() != stored.dim() or tuple(t.shape[2:]) != pattern_shape or t.shape[0] != stored.shape[0]:
            raise BadInput(f"image_grid: {name} has shape {tuple(t.shape)}, stored has {tuple(stored.shape)}")
    if value_range is None:
        value_range = (-1.0, 1.0) if any(bool((t < 0).any()) for _, t in panels) else (0.0, 1.0)
    B = min(stored.shape[0], max_episodes)
    rows = min(max_patterns, max(t.shape[1] for _, t in panels))
    cols = B * len(panels)
    H, W, C = _layout(pattern_shape)
    scale = 0.9  # inches per image
    fig, axes = plt.subplots(rows, cols, figsize=(cols * scale, rows * scale * H / W + 0.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for b in range(B):
        for p, (name, t) in enumerate(panels):
            n = min(rows, t.shape[1])
            imgs = _as_hwc(to_images(t[b, :n], value_range), pattern_shape)
            col = b * len(panels) + p
            for i in range(n):
                ax = axes[i, col]
                img = imgs[i] if C == 3 else imgs[i, :, :, 0]
                ax.imshow(img, cmap=None if C == 3 else "gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            axes[0, col].set_title(f"{name}" + (f"\nep {b}" if p == 0 and B > 1 else ""), fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def sample_grid(
    written: Tensor,
    samples: Tensor,
    path: Path | str,
    max_episodes: int = 4,
    per_row: int = 8,
    value_range: tuple[float, float] | None = None,
    title: str | None = None,
) -> Path:
    """Save a grid: per episode one row of (some of) the written patterns, then rows of samples.

    Args:
        written: (B, T, *pattern) the episodes written into the memory.
        samples: (B, n, *pattern) samples drawn from each written memory.
        path: where to write the PNG.
        max_episodes: how many episodes to show at most.
        per_row: images per row; the first row of an episode shows its first ``per_row`` patterns.
        value_range, title: as in ``image_grid``.
    """
    if not isinstance(written, Tensor) or written.dim() < 3:
        raise BadInput(
            f"sample_grid: written must be a (B, T, *pattern) tensor, got {getattr(written, 'shape', written)}"
        )
    pattern_shape = tuple(written.shape[2:])
    if (
        samples.dim() != written.dim()
        or tuple(samples.shape[2:]) != pattern_shape
        or samples.shape[0] != written.shape[0]
    ):
        raise BadInput(f"sample_grid: samples have shape {tuple(samples.shape)}, written has {tuple(written.shape)}")
    if value_range is None:
        value_range = (-1.0, 1.0) if bool((written < 0).any()) or bool((samples < 0).any()) else (0.0, 1.0)
    B = min(written.shape[0], max_episodes)
    sample_rows = -(-samples.shape[1] // per_row)
    rows = B * (1 + sample_rows)
    H, W, C = _layout(pattern_shape)
    scale = 0.8
    fig, axes = plt.subplots(rows, per_row, figsize=(per_row * scale, rows * scale * H / W + 0.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for b in range(B):
        top = b * (1 + sample_rows)
        blocks = [(top, written[b, :per_row])] + [
            (top + 1 + r, samples[b, r * per_row : (r + 1) * per_row]) for r in range(sample_rows)
        ]
        for row, images in blocks:
            imgs = _as_hwc(to_images(images, value_range), pattern_shape)
            for i in range(imgs.shape[0]):
                img = imgs[i] if C == 3 else imgs[i, :, :, 0]
                axes[row, i].imshow(img, cmap=None if C == 3 else "gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        axes[top, 0].set_title(f"ep {b}: written", fontsize=8, loc="left")
        axes[top + 1, 0].set_title("samples", fontsize=8, loc="left")
    if title:
        fig.suptitle(title, fontsize=10)
    return _save(fig, path)


def _to_array(v) -> np.ndarray:
    if isinstance(v, Tensor):
        v = v.detach().cpu().numpy()
    return np.asarray(v, dtype=float)


def plot_curves(
    x: Sequence[float] | Tensor,
    curves: Mapping[str, tuple],
    path: Path | str,
    xlabel: str,
    ylabel: str,
    vline: float | tuple[float, str] | None = None,
    logx: bool = False,
    logy: bool = False,
    title: str | None = None,
) -> Path:
    """Save metric curves with 95% confidence bands, e.g. error vs memory size or vs load.

    Args:
        x: (P,) shared x values, or per-curve x given as a third tuple entry.
        curves: ``{name: (mean, ci)}`` or ``{name: (mean, ci, x)}`` with (P,) sequences; ci may be None.
        path: the PNG to write.
        xlabel, ylabel: axis labels.
        vline: an x position (or (x, label)) drawn as a dashed vertical line, e.g. a capacity.
        logx, logy: logarithmic axes.
        title: figure title.
    """
    if not curves:
        raise BadInput("plot_curves: no curves to plot")
    fig, ax = plt.subplots(figsize=(6, 4))
    for name, entry in curves.items():
        if len(entry) not in (2, 3):
            raise BadInput(f"plot_curves: curve '{name}' must be (mean, ci) or (mean, ci, x)")
        mean = _to_array(entry[0])
        xs = _to_array(entry[2] if len(entry) == 3 else x)
        if mean.shape != xs.shape:
            raise BadInput(f"plot_curves: curve '{name}' has {mean.shape[0]} points but x has {xs.shape[0]}")
        (line,) = ax.plot(xs, mean, marker="o", markersize=3, label=name)
        if entry[1] is not None:
            ci = np.nan_to_num(_to_array(entry[1]), nan=0.0)
            ax.fill_between(xs, mean - ci, mean + ci, color=line.get_color(), alpha=0.2, linewidth=0)
    if vline is not None:
        pos, label = vline if isinstance(vline, tuple) else (vline, None)
        ax.axvline(pos, color="k", linestyle="--", linewidth=1, label=label)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return _save(fig, path)


def plot_bars(
    labels: Sequence[str],
    means: Sequence[float],
    cis: Sequence[float | None] | None,
    path: Path | str,
    xlabel: str,
    reference: tuple[float, str] | None = None,
    title: str | None = None,
) -> Path:
    """Save a horizontal bar chart with 95% confidence intervals, e.g. one metric per ablation variant.

    Args:
        labels: (P,) bar names, drawn top to bottom.
        means: (P,) bar lengths.
        cis: (P,) half-widths of the intervals (None entries: no error bar), or None for no error bars.
        path: the PNG to write.
        xlabel: the metric's axis label.
        reference: an (x, label) drawn as a dashed vertical line, e.g. the query's own error.
        title: figure title.
    """
    if not labels:
        raise BadInput("plot_bars: no bars to plot")
    if len(means) != len(labels) or (cis is not None and len(cis) != len(labels)):
        raise BadInput(f"plot_bars: {len(labels)} labels but {len(means)} means / {len(cis or [])} intervals")
    mean = _to_array(means)
    err = None if cis is None else np.nan_to_num(_to_array([float("nan") if c is None else c for c in cis]), nan=0.0)
    fig, ax = plt.subplots(figsize=(6, 0.8 + 0.35 * len(labels)))
    ys = np.arange(len(labels))
    ax.barh(ys, mean, xerr=err, color="tab:blue", alpha=0.8, capsize=3)
    ax.set_yticks(ys, labels=list(labels), fontsize=8)
    ax.invert_yaxis()
    if reference is not None:
        ax.axvline(reference[0], color="k", linestyle="--", linewidth=1, label=reference[1])
        ax.legend(fontsize=8)
    ax.set_xlabel(xlabel)
    if title:
        ax.set_title(title, fontsize=10)
    ax.grid(axis="x", alpha=0.3)
    return _save(fig, path)


def plot_panels(
    panels: Sequence[Mapping],
    path: Path | str,
    xlabel: str,
    ylabel: str,
    title: str | None = None,
    logy: bool = True,
) -> Path:
    """Save one small panel per setting: a curve with flat reference lines, e.g. validation error
    against meta-steps for each episode length T, with the baselines' errors as horizontal lines.

    Args:
        panels: dicts with ``title``, ``x`` and ``y`` (the curve), optionally its ``label``, and ``lines``
            ({label: value}, drawn flat; values ≤ 0 are drawn at 1e-4 on a log axis).
        path: the PNG to write.
        xlabel, ylabel: axis labels (shared by the panels).
        title: figure title.
        logy: logarithmic y axis (errors spanning decades).
    """
    if not panels:
        raise BadInput("plot_panels: no panels to plot")
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.2 * rows), squeeze=False)
    styles = ["--", ":", "-.", (0, (5, 1)), (0, (1, 1))]
    for ax, panel in zip(axes.flat, panels):
        x, y = _to_array(panel["x"]), _to_array(panel["y"])
        if x.shape != y.shape:
            raise BadInput(f"plot_panels: panel '{panel.get('title')}' has {x.shape[0]} x and {y.shape[0]} y values")
        ax.plot(x, y, marker="o", markersize=2, color="tab:blue", label=panel.get("label", "model"))
        for i, (label, value) in enumerate(panel.get("lines", {}).items()):
            ax.axhline(
                max(value, 1e-4) if logy else value,
                color=f"C{i + 1}",
                linestyle=styles[i % len(styles)],
                linewidth=1,
                label=label,
            )
        if logy:
            ax.set_yscale("log")
        ax.set_title(str(panel.get("title", "")), fontsize=9)
        ax.set_xlabel(xlabel, fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(panels) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return _save(fig, path)


_NOT_CURVES = {"step", "wall", "episodes_per_s", "lr"}


def plot_training_log(csv_path: Path | str, path: Path | str, max_panels: int = 4) -> Path:
    """Save training curves from a run's ``log.csv`` (columns: step, loss, logs, val_*, lr, ...).

    One panel per logged quantity (``loss`` first), its training values and, when present, the
    ``val_``-prefixed validation values at the steps they were measured. Empty cells are skipped.
    """
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DataError(f"training log {csv_path} does not exist")
    with open(csv_path, newline="") as f:
        rows = list(csv.DictReader(f))
    if not rows or "step" not in rows[0]:
        raise DataError(f"training log {csv_path} has no rows or no 'step' column")
    columns = list(rows[0].keys())
    names = [c for c in columns if c not in _NOT_CURVES and not c.startswith("val_")]
    names += [c[4:] for c in columns if c.startswith("val_") and c[4:] not in names]
    names = sorted(names, key=lambda n: n != "loss")[:max_panels]
    if not names:
        raise DataError(f"training log {csv_path} has no metric columns")

    def series(column: str) -> tuple[np.ndarray, np.ndarray]:
        pts = [(float(r["step"]), float(r[column])) for r in rows if r.get(column) not in (None, "")]
        arr = np.array(pts, dtype=float).reshape(-1, 2)
        return arr[:, 0], arr[:, 1]

    fig, axes = plt.subplots(1, len(names), figsize=(4 * len(names), 3.2), squeeze=False)
    for ax, name in zip(axes[0], names):
        for column, label in ((name, "train"), (f"val_{name}", "val")):
            if column in columns:
                steps, values = series(column)
                if len(steps):
                    ax.plot(steps, values, marker="o" if len(steps) < 20 else None, markersize=3, label=label)
        ax.set_xlabel("step")
        ax.set_title(name, fontsize=9)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    return _save(fig, path)
