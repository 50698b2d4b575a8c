"""Fault matrix, checkpoints: a training process SIGKILLed at a random moment while it writes
checkpoints always leaves a loadable latest checkpoint (and a loadable best/), and resuming gives
the uninterrupted run's losses, weights, log and best/.

Each trial runs the toy run of tests/training in a child process that kills itself with SIGKILL at
the k-th checkpoint file operation (before, during or after it; see killhelp.py), or from a timer
at an arbitrary moment. The default run has two trials; ``-m slow`` runs 26 more.
"""

import csv
import random
import signal
import subprocess
import sys
import time

import killhelp
import pytest
import torch
from trainhelp import make_memory

from engramlab.training import checkpoint as ckpt

VOLATILE = {"wall", "episodes_per_s"}


def log_rows(out_dir):
    with open(out_dir / "log.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k not in VOLATILE} for row in csv.DictReader(f)]


def weights(path):
    model = make_memory()
    ckpt.load_weights(path, model)
    return model.state_dict()


def assert_same(a, b):
    assert a.keys() == b.keys()
    for name in a:
        assert torch.equal(a[name], b[name]), name


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The uninterrupted run, with its checkpoint file operations counted (not killed)."""
    out = tmp_path_factory.mktemp("reference") / "run"
    patcher = pytest.MonkeyPatch()
    try:
        events = killhelp.install(None, patch=patcher.setattr)
        t0 = time.perf_counter()
        trainer, losses = killhelp.run_toy(out)
        seconds = time.perf_counter() - t0
    finally:
        patcher.undo()
    return {
        "out": out,
        "events": list(events),
        "losses": losses,
        "state": trainer.model.state_dict(),
        "seconds": seconds,
    }


def trial(tmp_path, reference, mode, arg):
    out = tmp_path / "run"
    cmd = [sys.executable, killhelp.__file__, str(out), mode, str(arg), str(torch.get_num_threads())]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert proc.returncode == -signal.SIGKILL, (proc.returncode, proc.stderr[-2000:])

    # What a reader sees right after the kill: the latest step and best/ load and verify.
    found = ckpt.step_checkpoints(out)
    start = found[-1][0] if found else 0
    if found:
        weights(found[-1][1])
        ckpt.load_rng(found[-1][1])
        assert int(ckpt.read_meta(found[-1][1])["step"]) == start
    if (out / ckpt.BEST_DIR).is_dir() or list(out.glob(".trash-best-*")):  # a best/ was saved before the kill
        resolved = ckpt.resolve_checkpoint(out)  # what `engram eval run/` loads: a best, not the latest step
        assert "best" in resolved.name and weights(resolved)

    resumed, losses = killhelp.run_toy(out, resume=True)
    assert losses == reference["losses"][start:]
    assert_same(resumed.model.state_dict(), reference["state"])
    assert log_rows(out) == log_rows(reference["out"])
    assert_same(weights(out / ckpt.BEST_DIR), weights(reference["out"] / ckpt.BEST_DIR))
    assert ckpt.read_meta(out / ckpt.BEST_DIR)["step"] == ckpt.read_meta(reference["out"] / ckpt.BEST_DIR)["step"]
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no temporary left over


def best_swap_event(events):
    """The number (from 1) of the os.replace that moves the old best/ aside, before the new one moves in."""
    return events.index("os.replace best") + 1


def test_the_child_sees_the_same_events_as_the_reference(reference):
    assert reference["events"].count("save_file") == 2 * reference["events"].count("torch.save")
    assert len(reference["events"]) > 60


def test_kill_between_moving_the_old_best_aside_and_the_new_one_in(tmp_path, reference):
    trial(tmp_path, reference, "after", best_swap_event(reference["events"]))


def test_kill_at_a_random_checkpoint_write(tmp_path, reference):
    rng = random.Random(16)
    trial(tmp_path, reference, rng.choice(killhelp.MODES), rng.randint(1, len(reference["events"])))


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(20))
def test_kill_at_random_checkpoint_writes_many(tmp_path, reference, seed):
    rng = random.Random(1000 + seed)
    trial(tmp_path, reference, rng.choice(killhelp.MODES), rng.randint(1, len(reference["events"])))


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(6))
def test_kill_from_a_timer_at_an_arbitrary_moment(tmp_path, reference, seed):
    # The child's run takes about as long as the reference (plus its start-up before the timer starts).
    trial(tmp_path, reference, "timer", random.Random(2000 + seed).uniform(0.0, 1.5 * reference["seconds"]))
