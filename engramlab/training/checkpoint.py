"""Checkpoints: one directory per saved step, written atomically, readable without unpickling code.

Layout of a run directory::

    out_dir/
      step-00000100/            # the last ``keep_last`` of these are kept
        model.safetensors       # model.state_dict() (weights and buffers)
        optimizer.pt            # optimizer.state_dict(), read back with torch.load(weights_only=True)
        rng.safetensors         # torch CPU (and CUDA) RNG states as uint8 tensors
        meta.json               # step, experiment config, memory name, pattern shape, metrics,
                                # trainer state, versions, sha256 of every file above
      best/                     # the checkpoint with the lowest validation loss so far
      log.csv

A checkpoint is first written into a hidden temporary directory beside its final name and then
renamed with ``os.replace``, so a crash never leaves a half-written ``step-*`` or ``best/`` behind.

Example::

    memory, experiment, meta = load_checkpoint("runs/hl")      # best/ if present, else the latest
    memory, experiment, meta = load_checkpoint("runs/hl/step-00000200", device="cuda")
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import re
import shutil
import time
import uuid
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from engramlab.errors import CheckpointError, EngramError

logger = logging.getLogger(__name__)

MODEL_FILE = "model.safetensors"
OPTIMIZER_FILE = "optimizer.pt"
RNG_FILE = "rng.safetensors"
META_FILE = "meta.json"
BEST_DIR = "best"
FORMAT_VERSION = 1
_STEP_DIR = re.compile(r"^step-(\d{8,})$")


def step_dir_name(step: int) -> str:
    return f"step-{step:08d}"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_file(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    try:
        engramlab_version = version("engramlab")
    except PackageNotFoundError:
        engramlab_version = "unknown"
    return {"engramlab": engramlab_version, "torch": torch.__version__, "python": platform.python_version()}


def rng_state() -> dict[str, torch.Tensor]:
    """The torch CPU and CUDA generator states, as uint8 tensors named ``cpu`` and ``cuda.<i>``."""
    states = {"cpu": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        for i, state in enumerate(torch.cuda.get_rng_state_all()):
            states[f"cuda.{i}"] = state
    return states


def set_rng_state(states: dict[str, torch.Tensor]) -> None:
    """Restore what ``rng_state`` returned (CUDA states only for devices that exist here)."""
    torch.set_rng_state(states["cpu"])
    if torch.cuda.is_available():
        for name, state in states.items():
            if name.startswith("cuda.") and int(name[5:]) < torch.cuda.device_count():
                torch.cuda.set_rng_state(state, int(name[5:]))


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    meta: dict[str, Any] | None = None,
) -> Path:
    """Write a checkpoint directory at ``path`` atomically (temp dir + ``os.replace``) and return it.

    ``meta`` is plain JSON-able data (step, experiment, metrics, ...); the file hashes, versions and
    format version are added. An existing directory at ``path`` is replaced.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.parent / f".tmp-{path.name}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        weights = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
        save_file(weights, str(tmp / MODEL_FILE))
        files = [MODEL_FILE]
        if optimizer is not None:
            torch.save(optimizer.state_dict(), tmp / OPTIMIZER_FILE)
            files.append(OPTIMIZER_FILE)
        save_file({k: v.contiguous() for k, v in rng_state().items()}, str(tmp / RNG_FILE))
        files.append(RNG_FILE)
        full_meta = dict(meta or {})
        full_meta.update(
            format_version=FORMAT_VERSION,
            versions=_versions(),
            saved_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            files={name: _sha256(tmp / name) for name in files},
        )
        (tmp / META_FILE).write_text(json.dumps(full_meta, indent=2, sort_keys=True, default=_json_default))
        for name in [*files, META_FILE]:
            _fsync_file(tmp / name)
        if path.exists():
            trash = path.parent / f".trash-{path.name}-{uuid.uuid4().hex[:8]}"
            os.replace(path, trash)
            os.replace(tmp, path)
            shutil.rmtree(trash, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    logger.debug("saved checkpoint %s", path)
    return path


def _json_default(value: Any) -> Any:
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return value.item()
    if isinstance(value, (tuple, set)):
        return list(value)
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON-serialisable in checkpoint meta: {value!r}")


def _set_aside_best(run_dir: Path) -> Path | None:
    """A complete ``best/`` that a killed save moved aside (``.trash-best-*``) before moving the new one in."""
    if (run_dir / BEST_DIR).exists():
        return None
    for child in sorted(run_dir.glob(f".trash-{BEST_DIR}-*")):
        if (child / META_FILE).is_file():
            return child
    return None


def clean_temporary(run_dir: str | Path) -> None:
    """Remove temporary directories a killed process left behind in ``run_dir``.

    A ``best/`` that was moved aside by a save killed before the new one replaced it is put back.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return
    aside = _set_aside_best(run_dir)
    if aside is not None:
        os.replace(aside, run_dir / BEST_DIR)
    for child in run_dir.iterdir():
        if child.is_dir() and (child.name.startswith(".tmp-") or child.name.startswith(".trash-")):
            shutil.rmtree(child, ignore_errors=True)


def step_checkpoints(run_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete ``step-*`` checkpoints in ``run_dir`` (those with a meta.json), sorted by step."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    found = []
    for child in run_dir.iterdir():
        match = _STEP_DIR.match(child.name)
        if match and (child / META_FILE).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    """The ``step-*`` checkpoint with the highest step in ``run_dir``, or None when there is none."""
    found = step_checkpoints(run_dir)
    return found[-1][1] if found else None


def prune_checkpoints(run_dir: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the ``keep_last`` newest ``step-*`` checkpoints; ``best/`` is never touched.

    Each is first renamed to a hidden ``.trash-*`` name, so a kill mid-deletion leaves no half-deleted
    ``step-*`` (``clean_temporary`` removes the rest).
    """
    found = step_checkpoints(run_dir)
    removed = []
    for _, path in found[: max(0, len(found) - keep_last)]:
        trash = path.parent / f".trash-{path.name}-{uuid.uuid4().hex[:8]}"
        os.replace(path, trash)
        shutil.rmtree(trash, ignore_errors=True)
        removed.append(path)
    return removed


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint directory from a checkpoint or run directory (a run dir gives ``best/``, else latest)."""
    path = Path(path)
    if (path / META_FILE).is_file():
        return path
    if not path.exists():
        raise CheckpointError(f"checkpoint not found: {path}")
    if not path.is_dir():
        raise CheckpointError(f"a checkpoint is a directory with {META_FILE}; got the file {path}")
    if (path / BEST_DIR / META_FILE).is_file():
        return path / BEST_DIR
    aside = _set_aside_best(path)  # a save of best/ was killed between its two renames
    if aside is not None:
        return aside
    latest = latest_checkpoint(path)
    if latest is None:
        raise CheckpointError(f"no checkpoint in {path}: missing {path / META_FILE} and no step-*/ or best/ inside")
    return latest


def read_meta(path: str | Path) -> dict[str, Any]:
    """The meta.json of a checkpoint directory (CheckpointError when missing or not JSON)."""
    meta_path = Path(path) / META_FILE
    try:
        meta = json.loads(meta_path.read_text())
    except FileNotFoundError as e:
        raise CheckpointError(f"checkpoint file missing: {meta_path}") from e
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint file corrupt: {meta_path} is not valid JSON ({e})") from e
    if not isinstance(meta, dict):
        raise CheckpointError(f"checkpoint file corrupt: {meta_path} is not a JSON object")
    return meta


def _verified(path: Path, name: str, meta: dict[str, Any]) -> Path:
    """``path/name`` after checking it exists and matches the sha256 recorded in meta.json."""
    file = path / name
    if not file.is_file():
        raise CheckpointError(f"checkpoint file missing: {file}")
    expected = meta.get("files", {}).get(name)
    if expected is not None and _sha256(file) != expected:
        raise CheckpointError(f"checkpoint file corrupt: {file} does not match the sha256 in {META_FILE}")
    return file


def load_weights(path: str | Path, model: nn.Module, device: str | torch.device | None = None) -> dict[str, Any]:
    """Load ``model.safetensors`` of checkpoint ``path`` into ``model`` (strict); return its meta."""
    path = resolve_checkpoint(path)
    meta = read_meta(path)
    file = _verified(path, MODEL_FILE, meta)
    try:
        weights = load_file(str(file), device=str(device) if device is not None else "cpu")
    except (SafetensorError, OSError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint file corrupt: {file} ({e})") from e
    try:
        model.load_state_dict(weights, strict=True)
    except RuntimeError as e:
        raise CheckpointError(f"checkpoint {file} does not match the model: {e}") from e
    return meta


def load_optimizer(path: str | Path, optimizer: torch.optim.Optimizer) -> None:
    """Load ``optimizer.pt`` (tensors and plain data only: ``weights_only=True``) into ``optimizer``."""
    path = Path(path)
    meta = read_meta(path)
    file = _verified(path, OPTIMIZER_FILE, meta)
    try:
        state = torch.load(file, map_location="cpu", weights_only=True)
        optimizer.load_state_dict(state)
    except (RuntimeError, ValueError, KeyError, EOFError, OSError) as e:
        raise CheckpointError(f"checkpoint file corrupt or not for this optimizer: {file} ({e})") from e
    except Exception as e:  # unpickling errors of a damaged file have varied types
        raise CheckpointError(f"checkpoint file corrupt: {file} ({type(e).__name__}: {e})") from e


def load_rng(path: str | Path) -> dict[str, torch.Tensor]:
    """The RNG states stored in ``rng.safetensors`` of checkpoint ``path``."""
    path = Path(path)
    file = _verified(path, RNG_FILE, read_meta(path))
    try:
        return load_file(str(file))
    except (SafetensorError, OSError, RuntimeError) as e:
        raise CheckpointError(f"checkpoint file corrupt: {file} ({e})") from e


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu"):
    """Rebuild the memory stored in a checkpoint: ``(memory, experiment, meta)``.

    ``path`` is a checkpoint directory or a run directory (its ``best/`` when present, else its
    latest ``step-*``). The memory is rebuilt from the stored config with
    ``engramlab.memories.build_memory`` and its weights loaded; it is returned in eval mode on
    ``device``. ``experiment`` is the stored ``Experiment`` (None when the run had none).
    """
    from engramlab.memories import build_memory
    from engramlab.training.config import Experiment

    path = resolve_checkpoint(path)
    meta = read_meta(path)
    memory_cfg = meta.get("memory")
    pattern_shape = meta.get("pattern_shape")
    if not isinstance(memory_cfg, dict) or "name" not in memory_cfg or pattern_shape is None:
        raise CheckpointError(
            f"checkpoint {path} records no memory name/config and pattern shape in {META_FILE}: it was not saved "
            "from a registered memory; load its weights into your model with load_weights()"
        )
    fields = {k: v for k, v in memory_cfg.items() if k != "name"}
    try:
        memory = build_memory(memory_cfg["name"], tuple(pattern_shape), **fields)
    except EngramError as e:
        raise CheckpointError(f"cannot rebuild the memory of checkpoint {path}: {e}") from e
    load_weights(path, memory)
    experiment = None
    if meta.get("experiment") is not None:
        try:
            experiment = Experiment.from_dict(meta["experiment"])
        except EngramError as e:
            raise CheckpointError(f"checkpoint {path / META_FILE} holds an invalid experiment config: {e}") from e
    return memory.to(device).eval(), experiment, meta
