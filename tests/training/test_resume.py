"""Exact resume: a run stopped at step k and resumed reproduces the uninterrupted run bit for bit."""

import csv
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from trainhelp import COMPILED_EBMM, ToySource, make_memory

from engramlab.training import TrainConfig, Trainer

CONFIG = dict(steps=6, lr=3e-2, warmup_steps=2, schedule="cosine", eval_every=2, eval_batches=2, checkpoint_every=2)
VOLATILE = {"wall", "episodes_per_s"}


class Killed(Exception):
    pass


def run(out_dir, resume=False, kill_after=None, seed=5, **overrides):
    """Train the noisy linear autoencoder; ``kill_after`` raises out of fit after that step."""
    losses = []

    def hook(trainer, step, row):
        losses.append(row["loss"])
        if step == kill_after:
            raise Killed

    trainer = Trainer(
        make_memory(seed=0, noise=0.5),
        ToySource(seed=1),
        TrainConfig(**{**CONFIG, **overrides}),
        out_dir,
        ToySource(seed=2),
        device="cpu",
        progress=False,
        seed=seed,
        hooks=[hook],
        resume=resume,
    )
    try:
        result = trainer.fit()
    except Killed:
        result = None
    return trainer, result, losses


def log_rows(out_dir):
    with open(Path(out_dir) / "log.csv", newline="") as f:
        return [{k: v for k, v in row.items() if k not in VOLATILE} for row in csv.DictReader(f)]


def assert_same_weights(a, b):
    for (name, p), q in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(p, q), name


def test_resume_matches_uninterrupted_run(tmp_path):
    full, full_result, full_losses = run(tmp_path / "full")
    _, _, first = run(tmp_path / "split", kill_after=3)  # killed after step 3; checkpoint of step 2
    resumed, result, second = run(tmp_path / "split", resume=True)
    assert first[:2] + second == full_losses  # steps 1-2, then 3-6 again from the checkpoint
    assert result.step == 6 and result.best_val == full_result.best_val and result.best_step == full_result.best_step
    assert_same_weights(resumed.model, full.model)
    assert log_rows(tmp_path / "split") == log_rows(tmp_path / "full")  # no duplicate or missing rows


def test_model_randomness_is_a_function_of_the_step(tmp_path):
    _, _, a = run(None, steps=3, checkpoint_every=0)
    torch.manual_seed(123)  # the global RNG before fit does not matter
    _, _, b = run(None, steps=3, checkpoint_every=0)
    _, _, c = run(None, steps=3, checkpoint_every=0, seed=6)
    assert a == b
    assert a != c  # the model's noise is drawn from the trainer seed


def test_resume_without_a_checkpoint_starts_fresh(tmp_path):
    _, result, losses = run(tmp_path, resume=True, steps=2)
    assert result.step == 2 and len(losses) == 2


def test_resume_of_a_finished_run_does_nothing(tmp_path):
    from engramlab.training.checkpoint import read_meta

    _, first, _ = run(tmp_path, steps=2)
    _, result, losses = run(tmp_path, resume=True, steps=2)
    assert result.step == 2 and losses == []
    # the run's wall time up to its checkpoint survives the resume (benchmarks report it)
    saved = read_meta(first.checkpoint)["trainer"]["wall"]
    assert saved > 0 and result.run_wall_seconds == pytest.approx(saved + result.wall_seconds)


def test_resume_can_extend_the_number_of_steps(tmp_path):
    run(tmp_path, steps=2, schedule="constant", warmup_steps=0)
    _, result, losses = run(tmp_path, resume=True, steps=4, schedule="constant", warmup_steps=0)
    assert result.step == 4 and len(losses) == 2
    assert [int(r["step"]) for r in log_rows(tmp_path)] == [1, 2, 3, 4]


SCRIPT = """
import os, sys
sys.path.insert(0, {helpers!r})
import pytest
import torch
torch.set_num_threads({threads})
from trainhelp import ToySource, make_memory
from engramlab.training import TrainConfig, Trainer

def die(trainer, step, row):
    if step == {kill_after}:
        os._exit(3)  # a hard kill: no cleanup, no exception handling, no atexit

Trainer(
    make_memory(seed=0, noise=0.5), ToySource(seed=1), TrainConfig(**{config!r}), {out!r}, ToySource(seed=2),
    device="cpu", progress=False, seed=5, hooks=[die],
).fit()
"""


def test_killed_process_resumes_to_identical_losses(tmp_path):
    script = tmp_path / "killed_run.py"
    out = tmp_path / "killed"
    helpers = str(Path(__file__).parent)
    script.write_text(
        textwrap.dedent(
            SCRIPT.format(helpers=helpers, threads=torch.get_num_threads(), kill_after=5, config=CONFIG, out=str(out))
        )
    )
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3, proc.stderr
    assert [int(r["step"]) for r in log_rows(out)] == [1, 2, 3, 4, 5]  # row 5 logged, its checkpoint never made
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("step-")) == ["step-00000002", "step-00000004"]

    full, _, full_losses = run(tmp_path / "full")
    resumed, result, second = run(out, resume=True)
    assert second == full_losses[4:]
    assert_same_weights(resumed.model, full.model)
    assert log_rows(out) == log_rows(tmp_path / "full")


def test_resume_is_exact_with_gradient_accumulation(tmp_path):
    accumulate = 2
    full, _, full_losses = run(tmp_path / "full", accumulate=accumulate)
    run(tmp_path / "split", kill_after=3, accumulate=accumulate)
    resumed, _, second = run(tmp_path / "split", resume=True, accumulate=accumulate)
    assert second == full_losses[2:]
    assert_same_weights(resumed.model, full.model)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_resume_on_cuda_matches_uninterrupted_run(tmp_path):
    def cuda_run(out_dir, resume=False, kill_after=None):
        losses = []

        def hook(trainer, step, row):
            losses.append(row["loss"])
            if step == kill_after:
                raise Killed

        trainer = Trainer(
            make_memory(seed=0, noise=0.5),
            ToySource(seed=1),
            TrainConfig(**CONFIG),
            out_dir,
            ToySource(seed=2),
            device="cuda",
            progress=False,
            hooks=[hook],
            resume=resume,
        )
        try:
            trainer.fit()
        except Killed:
            pass
        return trainer, losses

    full, full_losses = cuda_run(tmp_path / "full")
    cuda_run(tmp_path / "split", kill_after=3)
    resumed, second = cuda_run(tmp_path / "split", resume=True)
    assert next(resumed.model.parameters()).is_cuda
    assert second == pytest.approx(full_losses[2:], rel=1e-6)
    for p, q in zip(resumed.model.parameters(), full.model.parameters()):
        torch.testing.assert_close(p, q)


@pytest.mark.slow
def test_compiled_training_resumes_exactly(tmp_path):
    """A compiled run killed after step 3 (last checkpoint: step 2) and resumed reproduces the uninterrupted compiled
    run bit for bit: losses and weights (one compilation, in this process, serves the three runs)."""
    from engramlab.memories.ebmm import compiled
    from engramlab.training import Experiment, train

    preset = tmp_path / "compiled.toml"
    preset.write_text(COMPILED_EBMM.replace("steps = 2", "steps = 4"))

    def run(out, resume=False, kill_after=None):
        losses = []

        def hook(trainer, step, row):
            losses.append(row["loss"])
            if step == kill_after:
                raise Killed

        try:
            train(Experiment.from_preset(str(preset)), out, device="cpu", resume=resume, progress=False, hooks=[hook])
        except Killed:
            pass
        return losses

    full = run(tmp_path / "full")
    step = compiled.compiled_meta_loss
    assert step._compiled is not None and not step.failed  # trained compiled, not on the plain path
    first = run(tmp_path / "split", kill_after=3)
    second = run(tmp_path / "split", resume=True)
    assert len(full) == 4 and first[:2] + second == full
    weights = {name: load_file(tmp_path / name / "step-00000004" / "model.safetensors") for name in ("full", "split")}
    assert weights["full"].keys() == weights["split"].keys()
    assert all(torch.equal(weights["full"][k], weights["split"][k]) for k in weights["full"])
