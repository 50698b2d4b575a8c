"""The benchmark harness: `engram bench SUITE [--quick]` (DESIGN.md, Results).

A suite is a function ``suite(ctx: BenchContext) -> BenchResult`` registered with
``@register_suite(name, description)`` in a module under ``engramlab/evaluation/suites``.
The harness runs it and writes, under ``<out>/<suite>/``:

- ``<run>.json``: config, seed, quick flag, package/torch versions, hardware, rows of metrics
  (with 95% confidence intervals over episodes), extra measurements, notes and wall time;
- ``<run>.md``: the rows as a markdown table (the paper's numbers beside ours where given);
- the PNG figures the suite drew through ``ctx.figure_path``.

``<run>`` is ``quick`` or ``full`` so the README can link stable paths.

Example::

    @register_suite("my-suite", "what it measures")
    def my_suite(ctx):
        return BenchResult(rows=[{"model": "x", "error": 0.1, "error_ci": 0.01}])
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engramlab.errors import BadConfig
from engramlab.registry import Registry

log = logging.getLogger(__name__)

# Budgets a suite may define: "quick" (≤ 40 CPU-minutes), "cpu" (≤ 90 CPU-minutes per model, run in the
# background with --resume, showing the paper's effect on a 2-core machine) and "full" (the paper's).
PRESETS = ("quick", "cpu", "full")


@dataclass
class BenchContext:
    """What a suite needs to run: budget preset, seed, device, where to put files, progress."""

    suite: str
    quick: bool
    seed: int
    device: torch.device
    out_dir: Path
    data_dir: Path | None = None
    progress: bool = True
    preset: str | None = None  # "quick", "cpu" or "full"; None: "quick" if quick else "full"
    resume: bool = False  # continue the suite's checkpointed training under ``work_dir``

    def __post_init__(self) -> None:
        if self.preset is None:
            self.preset = "quick" if self.quick else "full"
        if self.preset not in PRESETS:
            raise BadConfig(f"unknown bench preset '{self.preset}'; known: {', '.join(PRESETS)}")
        self.quick = self.preset == "quick"

    def budget(self, **budgets: Any) -> Any:
        """The suite's budget for this run's preset: ``ctx.budget(quick=QUICK, cpu=CPU, full=FULL)``;
        a preset the suite does not define is a BadConfig naming the ones it has."""
        if self.preset not in budgets:
            raise BadConfig(f"suite '{self.suite}' has no '{self.preset}' preset; it has: {', '.join(budgets)}")
        return budgets[self.preset]

    @property
    def work_dir(self) -> Path:
        """Where a suite keeps checkpoints of its long trainings (``--resume`` continues from them)."""
        return self.out_dir / f"{self.run_name}-work"

    def figure_path(self, name: str) -> Path:
        """Where to save a figure called ``name`` (``.png`` added); recorded in the result."""
        self.out_dir.mkdir(parents=True, exist_ok=True)
        stem = name if name.endswith(".png") else f"{name}.png"
        return self.out_dir / f"{self.run_name}-{stem}"

    @property
    def run_name(self) -> str:
        return str(self.preset)


@dataclass
class BenchResult:
    """What a suite returns.

    Attributes:
        rows: one dict per table row; keys are columns. Convention: a metric ``m`` has its 95%
            CI half-width in ``m_ci`` and the paper's value (or None) in ``m_paper``.
        columns: column order for the markdown table (default: keys of the first row, in order).
        config: the budget and settings actually used (steps, episodes, T, sizes...).
        extra: anything else worth keeping in the JSON (speed numbers, curves).
        notes: sentences printed under the table (splits, variants, deviations).
    """

    rows: list[dict[str, Any]]
    columns: list[str] | None = None
    config: dict[str, Any] = field(default_factory=dict)
    extra: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    title: str = ""


@dataclass
class Suite:
    name: str
    description: str
    run: Callable[[BenchContext], BenchResult]


SUITES: Registry[Suite] = Registry("benchmark suite", "engramlab.evaluation.suites")


def register_suite(name: str, description: str):
    """Function decorator: make a benchmark suite runnable as `engram bench NAME`."""

    def decorate(fn: Callable[[BenchContext], BenchResult]) -> Callable[[BenchContext], BenchResult]:
        SUITES.add(name, Suite(name, description, fn))
        return fn

    return decorate


def suites() -> dict[str, Suite]:
    return SUITES.items()


def _format(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if value != 0 and (abs(value) >= 1e4 or abs(value) < 1e-3):
            return f"{value:.3g}"
        return f"{value:.4g}"
    return str(value)


def markdown_table(rows: list[dict[str, Any]], columns: list[str] | None = None) -> str:
    """Rows as a markdown table; a metric ``m`` with ``m_ci`` is shown as ``mean ± ci``."""
    if not rows:
        return "(no rows)\n"
    if columns is None:
        columns = []
        for row in rows:
            columns += [k for k in row if k not in columns]
    shown = [c for c in columns if not c.endswith("_ci")]
    lines = ["| " + " | ".join(shown) + " |", "|" + "---|" * len(shown)]
    for row in rows:
        cells = []
        for c in shown:
            cell = _format(row.get(c))
            if row.get(f"{c}_ci") is not None and row.get(c) is not None:
                cell += f" ± {_format(row[f'{c}_ci'])}"
            cells.append(cell)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def environment() -> dict[str, Any]:
    """Versions and hardware, recorded in every result."""
    from engramlab import __version__

    env = {
        "engramlab": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        env["cuda_device"] = torch.cuda.get_device_name()
    return env


def run_suite(
    name: str,
    quick: bool = False,
    seed: int = 0,
    device: torch.device | str = "cpu",
    out_root: Path | str = "results",
    data_dir: Path | None = None,
    progress: bool = True,
    preset: str | None = None,
    resume: bool = False,
) -> dict[str, Path]:
    """Run suite ``name`` and write its JSON, markdown and figures; returns the written paths.

    ``preset`` ("quick", "cpu", "full") overrides ``quick``; ``resume`` continues the checkpointed
    trainings of a suite that keeps them (``BenchContext.work_dir``)."""
    suite = SUITES.get(name)
    out_dir = Path(out_root) / name
    ctx = BenchContext(name, quick, seed, torch.device(device), out_dir, data_dir, progress, preset, resume)
    start = time.perf_counter()
    result = suite.run(ctx)
    wall = time.perf_counter() - start
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = sorted(str(p.name) for p in out_dir.glob(f"{ctx.run_name}-*.png"))
    record = {
        "suite": name,
        "run": ctx.run_name,
        "quick": ctx.quick,
        "preset": ctx.preset,
        "seed": seed,
        "device": str(ctx.device),
        "environment": environment(),
        "config": result.config,
        "rows": result.rows,
        "extra": result.extra,
        "notes": result.notes,
        "figures": figures,
        "wall_time_s": wall,
        "resumed": resume,
    }
    json_path = out_dir / f"{ctx.run_name}.json"
    md_path = out_dir / f"{ctx.run_name}.md"
    _atomic_write(json_path, json.dumps(record, indent=2, default=_json_default))
    title = result.title or f"{name} ({ctx.run_name} preset)"
    md = [
        f"# {title}\n",
        f"`engram bench {name} --preset {ctx.preset} --seed {seed}{' --resume' if resume else ''}` — "
        f"{wall:.0f} s{' (this resumed invocation only)' if resume else ''} on {ctx.device} "
        f"({record['environment']['processor']}, "
        f"torch {torch.__version__})\n",
        markdown_table(result.rows, result.columns),
    ]
    md += [f"- {note}" for note in result.notes]
    md += [f"\n![{fig}]({fig})" for fig in figures]
    _atomic_write(md_path, "\n".join(md) + "\n")
    log.info("wrote %s and %s", json_path, md_path)
    return {"json": json_path, "markdown": md_path, **{f: out_dir / f for f in figures}}


def _json_default(obj: Any) -> Any:
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):
        return obj.item()
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
