"""Checkpoint-writing events and a SIGKILL at a chosen one (not a test module).

``install(kill_at, mode)`` wraps every file operation the checkpoint code and the CSV log make
(safetensors and torch writes, meta.json, fsync, os.replace, rmtree) with a counter. At event
number ``kill_at`` the process sends itself SIGKILL: ``before`` the operation, ``during`` it (a
write leaves half its bytes, a tree removal deletes one file) or ``after`` it. With ``kill_at=None``
the wrappers only count, so an uninterrupted run in the test process tells how many events a run
has. ``run_toy`` trains the tiny linear autoencoder of tests/training with a checkpoint every step.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import signal
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "training"))

import torch  # noqa: E402
from trainhelp import ToySource, make_memory  # noqa: E402

from engramlab.training import TrainConfig, Trainer  # noqa: E402
from engramlab.training import checkpoint as ckpt  # noqa: E402

CONFIG = dict(
    steps=6,
    lr=3e-2,
    warmup_steps=2,
    schedule="cosine",
    eval_every=1,
    eval_batches=1,
    checkpoint_every=1,
    keep_last=2,
    tensorboard=False,
)
MODES = ("before", "during", "after")


def _half_file(path) -> None:
    path = Path(path)
    if path.is_file():
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])


def install(kill_at: int | None = None, mode: str = "before", patch=None) -> list[str]:
    """Wrap the file operations; returns the list that records each event as it happens.

    Events are named by the operation, with the source's name for renames and removals
    (``"os.replace best"`` moves the old ``best/`` aside before the new one is moved in).

    ``patch(obj, name, value)`` sets an attribute (pytest's ``monkeypatch.setattr`` in-process).
    """
    patch = patch or setattr
    events: list[str] = []

    def kill() -> None:
        sys.stdout.flush()
        os.kill(os.getpid(), signal.SIGKILL)

    def wrap(name, fn, partial=None):
        def wrapper(*args, **kwargs):
            detail = Path(args[0]).name if name in ("os.replace", "rmtree") else ""
            events.append(f"{name} {detail}".strip())
            hit = len(events) == kill_at
            if hit and mode == "before":
                kill()
            if hit and mode == "during" and partial is not None:
                partial(*args, **kwargs)
                kill()
            out = fn(*args, **kwargs)
            if hit:
                kill()
            return out

        return wrapper

    def save_file_partial(tensors, filename, *a, **k):
        save_file(tensors, filename, *a, **k)
        _half_file(filename)

    def torch_save_partial(obj, f, *a, **k):
        torch_save(obj, f, *a, **k)
        _half_file(f)

    def write_text_partial(self, data, *a, **k):
        write_text(self, data[: len(data) // 2], *a, **k)

    def rmtree_partial(path, *a, **k):
        files = sorted(p for p in Path(path).rglob("*") if p.is_file())
        if files:
            files[0].unlink()

    save_file, torch_save, write_text, rmtree = ckpt.save_file, torch.save, pathlib.Path.write_text, shutil.rmtree
    patch(ckpt, "save_file", wrap("save_file", save_file, save_file_partial))
    patch(torch, "save", wrap("torch.save", torch_save, torch_save_partial))
    patch(pathlib.Path, "write_text", wrap("write_text", write_text, write_text_partial))
    patch(shutil, "rmtree", wrap("rmtree", rmtree, rmtree_partial))
    patch(ckpt, "_fsync_file", wrap("fsync", ckpt._fsync_file))
    patch(os, "replace", wrap("os.replace", os.replace))
    return events


def run_toy(out_dir, resume: bool = False) -> tuple[Trainer, list[float]]:
    """Train the toy memory (6 steps, a checkpoint and a validation every step); returns its losses."""
    losses: list[float] = []
    trainer = Trainer(
        make_memory(seed=0, noise=0.5),
        ToySource(seed=1),
        TrainConfig(**CONFIG),
        out_dir,
        ToySource(seed=2),
        device="cpu",
        progress=False,
        seed=5,
        hooks=[lambda trainer, step, row: losses.append(row["loss"])],
        resume=resume,
    )
    trainer.fit()
    return trainer, losses


def _kill_after(seconds: float) -> None:
    import threading
    import time

    def fire() -> None:
        time.sleep(seconds)
        os.kill(os.getpid(), signal.SIGKILL)

    threading.Thread(target=fire, daemon=True).start()


if __name__ == "__main__":  # python killhelp.py OUT_DIR MODE ARG THREADS (ARG: event number, or seconds for "timer")
    out, mode, arg, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
    torch.set_num_threads(threads)
    if mode == "timer":  # a kill at an arbitrary moment, possibly inside a C-level write
        _kill_after(float(arg))
    else:
        install(int(arg), mode)
    run_toy(out)
    if mode == "timer":
        signal.pause()  # finished before the timer: wait for it, the kill then hits a finished run
    sys.exit(3)  # not killed: the event count was wrong
