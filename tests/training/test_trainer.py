"""The meta-training loop: learning, numerics, accumulation, clipping, logs, validation, stopping."""

import csv
import os
import signal
import sys
import types

import pytest
import torch
from trainhelp import ToySource, make_memory

from engramlab.errors import BadConfig, BadInput, NumericalError
from engramlab.training import TrainConfig, Trainer


def fit(model, source=None, out_dir=None, progress=False, **cfg):
    config = TrainConfig(**{"steps": 5, "lr": 1e-2, **cfg})
    return Trainer(model, source or ToySource(), config, out_dir=out_dir, device="cpu", progress=progress).fit()


def read_log(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


class NaNAt(torch.nn.Module):
    """Loss finite until update ``at`` (1-based); then ``term`` becomes NaN (or the loss itself)."""

    def __init__(self, at: int, term: str):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(3))
        self.at, self.term, self.calls = at, term, 0

    def loss(self, batch):
        self.calls += 1
        loss = self.w.pow(2).sum() * batch.patterns.mean()
        kl = loss.detach() * 0
        if self.calls == self.at:
            if self.term == "loss":
                loss = loss * float("nan")
            else:
                kl = kl + float("inf")
        return loss, {"kl": kl}


def test_loss_decreases_when_overfitting_one_batch():
    losses = []
    result = Trainer(
        make_memory(noise=0.0),
        ToySource(fixed=True),
        TrainConfig(steps=150, lr=3e-2),
        device="cpu",
        progress=False,
        hooks=[lambda trainer, step, row: losses.append(row["loss"])],
    ).fit()
    assert result.step == 150 and len(losses) == 150
    assert losses[-1] < 0.3 * losses[0]


def test_nan_loss_raises_numerical_error_naming_step_and_term():
    with pytest.raises(NumericalError, match=r"non-finite loss in training at step 3: loss=nan"):
        fit(NaNAt(3, "loss"))


def test_nonfinite_log_term_raises_naming_the_term():
    with pytest.raises(NumericalError, match=r"log term in training at step 2: kl=inf"):
        fit(NaNAt(2, "kl"))


class InfGrad(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(2))
        self.v = torch.nn.Parameter(torch.ones(2))

    def loss(self, batch):
        # d/dw sqrt(w) at w=0 is inf although the loss is finite
        return self.w.abs().sqrt().sum() + self.v.pow(2).sum(), {}


def test_nonfinite_gradient_raises_naming_the_parameter():
    with pytest.raises(NumericalError, match=r"non-finite gradient at step 1 in parameters: w"):
        fit(InfGrad())


def test_zero_nonfinite_grads_zeroes_them_and_trains_on():
    model = InfGrad()
    result = fit(model, zero_nonfinite_grads=True, steps=3)
    assert result.step == 3
    assert torch.equal(model.w.detach(), torch.zeros(2))  # its gradient was zeroed each step
    assert (model.v.detach() < 1).all()


def test_gradient_accumulation_equals_a_big_batch():
    class Concat:
        """Batches of 8 = the two micro-batches of 4 that accumulate=2 sees at the same update."""

        pattern_shape = (6,)

        def __init__(self):
            self.small = ToySource(batch_size=4)

        def batch(self, step, rank=0):
            a, b = self.small.batch(2 * step, rank), self.small.batch(2 * step + 1, rank)
            return type(a)(patterns=torch.cat([a.patterns, b.patterns]))

    accumulated, big = make_memory(noise=0.0), make_memory(noise=0.0)
    fit(accumulated, ToySource(batch_size=4), steps=4, accumulate=2, clip_norm=None)
    fit(big, Concat(), steps=4, accumulate=1, clip_norm=None)
    for p, q in zip(accumulated.parameters(), big.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6)


def test_clip_norm_caps_the_global_gradient_norm():
    norms, logged = [], []

    def hook(trainer, step, row):
        grads = [p.grad for p in trainer.model.parameters()]
        norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))
        logged.append(row["grad_norm"])

    model = make_memory()
    Trainer(model, ToySource(), TrainConfig(steps=3, clip_norm=1e-3), device="cpu", progress=False, hooks=[hook]).fit()
    assert max(norms) <= 1e-3 * (1 + 1e-4)
    assert min(logged) > 1e-3  # the logged norm is the one before clipping


def test_learning_rate_follows_the_schedule_in_the_log(tmp_path):
    fit(make_memory(), out_dir=tmp_path, steps=6, lr=1.0, warmup_steps=2, schedule="cosine", optimizer="rmsprop")
    cfg = TrainConfig(steps=6, lr=1.0, warmup_steps=2, schedule="cosine")
    lrs = [float(r["lr"]) for r in read_log(tmp_path / "log.csv")]
    assert lrs == pytest.approx([cfg.lr_at(s) for s in range(6)])


def test_csv_log_has_step_lr_loss_every_log_key_and_speed(tmp_path):
    val = ToySource(seed=7)
    Trainer(
        make_memory(), ToySource(), TrainConfig(steps=4, eval_every=2), tmp_path, val, device="cpu", progress=False
    ).fit()
    rows = read_log(tmp_path / "log.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    for key in ("lr", "loss", "mse", "code", "grad_norm", "episodes_per_s", "wall", "val_loss", "val_mse"):
        assert key in rows[0], key
    assert rows[0]["val_loss"] == "" and rows[1]["val_loss"] != ""
    assert float(rows[-1]["episodes_per_s"]) > 0


def test_validation_uses_the_same_batches_and_keeps_the_best(tmp_path):
    val = ToySource(seed=7)
    result = Trainer(
        make_memory(),
        ToySource(),
        TrainConfig(steps=6, eval_every=2, eval_batches=2, lr=1e-2),
        tmp_path,
        val,
        device="cpu",
        progress=False,
    ).fit()
    assert val.calls == [(0, 0), (1, 0)] * 3
    rows = [r for r in read_log(tmp_path / "log.csv") if r["val_loss"]]
    best_row = min(rows, key=lambda r: float(r["val_loss"]))
    assert result.best_val == pytest.approx(float(best_row["val_loss"]))
    assert result.best_step == int(best_row["step"])
    assert result.best_checkpoint == tmp_path / "best"
    assert f'"step": {result.best_step}' in (tmp_path / "best" / "meta.json").read_text()


def test_keep_last_prunes_old_checkpoints(tmp_path):
    fit(make_memory(), out_dir=tmp_path, steps=5, checkpoint_every=1, keep_last=2)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("step-")) == [
        "step-00000004",
        "step-00000005",
    ]


def test_fresh_run_into_a_used_out_dir_refuses(tmp_path):
    fit(make_memory(), out_dir=tmp_path, steps=2)
    with pytest.raises(BadConfig, match="resume"):
        fit(make_memory(), out_dir=tmp_path, steps=2)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_signal_finishes_the_update_saves_and_returns_interrupted(tmp_path, signum):
    def send_signal(trainer, step, row):
        if step == 2:
            os.kill(os.getpid(), signum)

    previous = signal.getsignal(signum)
    result = Trainer(
        make_memory(), ToySource(), TrainConfig(steps=10), tmp_path, device="cpu", progress=False, hooks=[send_signal]
    ).fit()
    assert result.interrupted and result.step == 3
    assert (tmp_path / "step-00000003" / "meta.json").is_file()
    assert signal.getsignal(signum) is previous


def test_keyboard_interrupt_between_updates_saves_and_returns_interrupted(tmp_path):
    def interrupt(trainer, step, row):
        if step == 2:
            raise KeyboardInterrupt

    result = Trainer(
        make_memory(), ToySource(), TrainConfig(steps=10), tmp_path, device="cpu", progress=False, hooks=[interrupt]
    ).fit()
    assert result.interrupted and result.step == 2
    assert (tmp_path / "step-00000002" / "meta.json").is_file()


def test_progress_bar_goes_to_stderr_and_nothing_is_printed(capsys):
    fit(make_memory(), steps=3, progress=True)
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "loss=" in captured.err and "eps=" in captured.err


def test_tensorboard_scalars_are_written_when_it_is_installed(tmp_path, monkeypatch):
    calls = []

    class FakeWriter:
        def __init__(self, log_dir, purge_step=None):
            calls.append(("init", log_dir, purge_step))

        def add_scalar(self, key, value, step):
            calls.append((key, step))

        def close(self):
            calls.append(("close",))

    fake = types.ModuleType("torch.utils.tensorboard")
    fake.SummaryWriter = FakeWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    fit(make_memory(), out_dir=tmp_path, steps=2)
    assert calls[0] == ("init", str(tmp_path / "tb"), None)
    assert ("loss", 1) in calls and ("mse", 2) in calls and calls[-1] == ("close",)


def test_time_budget_stops_early_with_a_checkpoint(tmp_path):
    result = fit(make_memory(), out_dir=tmp_path, steps=10_000, max_seconds=0.3)
    assert result.stopped_by_time and not result.interrupted
    assert 0 < result.step < 10_000
    assert result.checkpoint == tmp_path / f"step-{result.step:08d}"


class Constant(torch.nn.Module):
    def __init__(self, logs):
        super().__init__()
        self.w = torch.nn.Parameter(torch.ones(1))
        self.logs = logs

    def loss(self, batch):
        return (self.w * 0).sum() + 1.0, self.logs


def test_log_keys_that_clash_with_loop_columns_are_prefixed(tmp_path):
    fit(Constant({"loss": 5.0, "lr": 6.0, "kl": 7.0}), out_dir=tmp_path, steps=1)
    row = read_log(tmp_path / "log.csv")[0]
    assert float(row["loss"]) == 1.0 and float(row["log_loss"]) == 5.0 and float(row["log_lr"]) == 6.0
    assert float(row["kl"]) == 7.0


def test_a_loss_without_gradient_or_not_scalar_is_bad_input():
    class NoGrad(Constant):
        def loss(self, batch):
            return torch.tensor(1.0), {}

    class Vector(Constant):
        def loss(self, batch):
            return self.w.expand(3), {}

    with pytest.raises(BadInput, match="does not depend on any trainable parameter"):
        fit(NoGrad({}))
    with pytest.raises(BadInput, match="scalar"):
        fit(Vector({}))


def test_signal_handling_can_be_left_to_the_caller(tmp_path):
    def interrupt(trainer, step, row):
        if step == 1:
            os.kill(os.getpid(), signal.SIGINT)

    trainer = Trainer(
        make_memory(), ToySource(), TrainConfig(steps=5), tmp_path, device="cpu", progress=False, hooks=[interrupt],
        handle_signals=False,
    )  # fmt: skip
    with pytest.raises(KeyboardInterrupt):  # from the default SIGINT handler: saved, then re-raised
        trainer.fit()
    assert trainer.step == 1 and (tmp_path / "step-00000001" / "meta.json").is_file()


def test_fit_best_leaves_the_best_validation_weights():
    """fit_best: the model ends with the weights it had at its best validation evaluation, not the last ones
    (a large lr makes the validation loss move between evaluations)."""
    from engramlab.training import fit_best

    snapshots = {}

    def keep(trainer, step, row):
        if "val_loss" in row:
            snapshots[step] = (row["val_loss"], {k: v.clone() for k, v in trainer.model.state_dict().items()})

    torch.manual_seed(0)
    model = make_memory()
    config = TrainConfig(steps=12, eval_every=2, eval_batches=2, lr=1.0)
    result = fit_best(model, ToySource(), config, ToySource(seed=7), device="cpu", progress=False, hooks=[keep])
    best_step = min(snapshots, key=lambda s: snapshots[s][0])
    assert result.best_step == best_step
    for key, value in model.state_dict().items():
        torch.testing.assert_close(value, snapshots[best_step][1][key])
    assert best_step != 12  # (lr 1.0: the last evaluation is not the best one, so the check is not vacuous)
