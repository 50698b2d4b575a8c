"""DDP through torchrun on CPU (gloo, 2 processes): identical weights, mean gradients, rank 0 writes."""

import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from trainhelp import COMPILED_EBMM, ToySource, make_memory

from engramlab.training import TrainConfig
from engramlab.training.loop import build_optimizer

pytestmark = pytest.mark.slow

STEPS = 3
CONFIG = dict(steps=STEPS, lr=5e-2, optimizer="adam", clip_norm=None, eval_every=0, checkpoint_every=1)

SCRIPT = """
import os, sys
sys.path.insert(0, {helpers!r})
import torch
from trainhelp import ToySource, make_memory
from engramlab.training import TrainConfig, Trainer

rank = int(os.environ["RANK"])
record = {{"grads": [], "weights": []}}

def keep(trainer, step, row):
    record["grads"].append([p.grad.clone() for p in trainer.model.parameters()])
    record["weights"].append([p.detach().clone() for p in trainer.model.parameters()])

model = make_memory(seed=rank, noise=0.0)  # different on each rank: DDP must broadcast rank 0's
result = Trainer(model, ToySource(seed=1), TrainConfig(**{config!r}), {out!r}, device="cpu", progress=False,
                 seed=5, hooks=[keep]).fit()
record["step"] = result.step
torch.save(record, os.path.join({out!r}, f"rank{{rank}}.pt"))
"""


def test_two_gloo_ranks_average_gradients_and_end_with_identical_weights(tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    script = tmp_path / "ddp_run.py"
    helpers = str(Path(__file__).parent)
    script.write_text(textwrap.dedent(SCRIPT.format(helpers=helpers, config=CONFIG, out=str(out))))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=_env())
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [torch.load(out / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert ranks[0]["step"] == ranks[1]["step"] == STEPS

    # both ranks hold the same weights and the same (averaged) gradients after every update
    for step in range(STEPS):
        for a, b in zip(ranks[0]["weights"][step], ranks[1]["weights"][step]):
            assert torch.equal(a, b)
        for a, b in zip(ranks[0]["grads"][step], ranks[1]["grads"][step]):
            assert torch.equal(a, b)

    # replay in one process: rank 0's initial weights, gradient = mean over the two ranks' batches
    model = make_memory(seed=0, noise=0.0)
    optimizer = build_optimizer(model.parameters(), TrainConfig(**CONFIG))
    source = ToySource(seed=1)
    losses = []
    for step in range(STEPS):
        grads, step_losses = [], []
        for rank in (0, 1):
            loss, _ = model.loss(source.batch(step, rank))
            grads.append(torch.autograd.grad(loss, list(model.parameters())))
            step_losses.append(float(loss.detach()))
        losses.append(sum(step_losses) / 2)
        for p, g0, g1, got in zip(model.parameters(), *grads, ranks[0]["grads"][step]):
            torch.testing.assert_close(got, (g0 + g1) / 2, rtol=1e-5, atol=1e-7)
            p.grad = (g0 + g1) / 2
        optimizer.step()
        for p, got in zip(model.parameters(), ranks[0]["weights"][step]):
            torch.testing.assert_close(got, p.detach(), rtol=1e-5, atol=1e-6)

    # rank 0 alone wrote the log (one row per step, the loss averaged over ranks) and the checkpoints
    with open(out / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == list(range(1, STEPS + 1))
    assert [float(r["loss"]) for r in rows] == pytest.approx(losses, rel=1e-5)
    assert (out / f"step-{STEPS:08d}" / "meta.json").is_file()


def _env():
    """This environment without any torchrun variables of an enclosing run, one thread per rank."""
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    return {**env, "OMP_NUM_THREADS": "1"}


PRESET = """
seed = 0
[memory]
name = "modern-hopfield-learned"
key_dim = 16
[data]
dataset = "digits"
episode_length = 6
batch_size = 4
[train]
steps = 4
eval_every = 2
eval_batches = 1
checkpoint_every = 2
"""


def _torchrun_train(tmp_path: Path, preset_text: str, timeout: float) -> tuple[subprocess.CompletedProcess, Path]:
    """``engram train`` of a TOML preset on two gloo ranks; (the finished process, the run directory)."""
    preset = tmp_path / "preset.toml"
    preset.write_text(preset_text)
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"]
    cmd += ["-m", "engramlab.cli", "train", str(preset), "--out", str(out), "--device", "cpu", "--no-progress"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=_env())
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc, out


def test_engram_train_under_torchrun_writes_one_run_from_rank_0(tmp_path):
    proc, out = _torchrun_train(tmp_path, PRESET, timeout=300)
    assert proc.stdout.count("trained to step 4") == 2  # each rank's CLI reports; rank 0 alone wrote
    with open(out / "log.csv", newline="") as f:
        assert [int(r["step"]) for r in csv.DictReader(f)] == [1, 2, 3, 4]
    assert sorted(p.name for p in out.iterdir()) == ["best", "log.csv", "step-00000002", "step-00000004"]
    meta = (out / "step-00000004" / "meta.json").read_text()
    assert '"world_size": 2' in meta


def test_compiled_ebmm_trains_under_torchrun(tmp_path):
    """EBMM's compiled step (memory.compile) inside DDP's forward on two gloo ranks: both compile, neither falls
    back to the plain step, rank 0 writes the run."""
    proc, out = _torchrun_train(tmp_path, COMPILED_EBMM, timeout=1200)
    assert proc.stdout.count("trained to step 2") == 2
    assert "torch.compile failed" not in proc.stderr and "plain path" not in proc.stderr
    with open(out / "log.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [int(r["step"]) for r in rows] == [1, 2] and all(float(r["loss"]) > 0 for r in rows)
