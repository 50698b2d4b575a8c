"""The one meta-training loop (minGPT-style): it knows nothing about memories.

The Trainer needs only a model with ``loss(batch) -> (scalar, {name: scalar})`` and sources with
``batch(step, rank=0)`` returning an object with ``.to(device)``. Each update:

1. sets the learning rate from the schedule (a pure function of the step, so nothing to save);
2. for each of ``accumulate`` micro-batches: reseeds torch from (seed, rank, step, micro) so the
   model's randomness is a function of the step, takes ``train_source.batch(step·accumulate+micro,
   rank)``, and back-propagates ``loss / accumulate`` (under DDP, gradients are averaged over ranks);
3. checks the loss and every log term are finite (NumericalError naming the step and the terms),
   optionally zeroes non-finite gradients, clips the global gradient norm, steps the optimiser;
4. every ``log_every`` updates writes a row of ``log.csv`` (and TensorBoard scalars when installed);
   every ``eval_every`` updates evaluates on the fixed validation batches and saves ``best/`` when
   the validation loss improves; every ``checkpoint_every`` updates saves ``step-XXXXXXXX/``.

A run resumed from its latest checkpoint reproduces the uninterrupted run's losses exactly on CPU.

Ctrl-C and SIGTERM: the first signal lets the current update finish, saves a checkpoint and makes
``fit`` return a ``TrainResult`` with ``interrupted=True`` (it does not re-raise); a second Ctrl-C
raises KeyboardInterrupt at once.

Example::

    trainer = Trainer(memory, EpisodeSource(data, "train", seed=0), TrainConfig(steps=500),
                      out_dir="runs/x", val_source=EpisodeSource(data, "val", seed=0))
    result = trainer.fit()          # result.best_val, result.checkpoint, result.log_path
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from engramlab.config import to_dict
from engramlab.errors import BadConfig, BadInput, NumericalError
from engramlab.nn.fast import adam
from engramlab.training import checkpoint as ckpt
from engramlab.training import distributed
from engramlab.training.config import Experiment, TrainConfig
from engramlab.training.logs import CsvLog, open_tensorboard
from engramlab.training.signals import StopRequests

logger = logging.getLogger(__name__)

_RESERVED = {"step", "loss", "lr", "grad_norm", "episodes_per_s", "wall"}  # log.csv columns of the loop itself
Hook = Callable[["Trainer", int, dict[str, float]], None]


@dataclass
class TrainResult:
    """What ``Trainer.fit`` returns.

    Attributes:
        step: updates completed (the step of the last checkpoint when one was saved).
        loss: training loss of the last update (None when no update ran in this call).
        val_loss: the last validation loss (None without validation).
        best_val, best_step: the lowest validation loss so far and the step it was reached at.
        out_dir, checkpoint, best_checkpoint, log_path: where things were written (None without out_dir).
        interrupted: True when Ctrl-C/SIGTERM stopped the run (a checkpoint was saved first).
        stopped_by_time: True when ``max_seconds`` ran out before ``steps``.
        wall_seconds: wall time of this call.
        run_wall_seconds: wall time of the whole run, resumed segments included (as log.csv's ``wall``).
    """

    step: int
    loss: float | None = None
    val_loss: float | None = None
    best_val: float | None = None
    best_step: int | None = None
    out_dir: Path | None = None
    checkpoint: Path | None = None
    best_checkpoint: Path | None = None
    log_path: Path | None = None
    interrupted: bool = False
    stopped_by_time: bool = False
    wall_seconds: float = 0.0
    run_wall_seconds: float = 0.0


def step_seed(seed: int, rank: int, step: int, micro: int = 0, tag: int = 0) -> int:
    """A 63-bit seed that is a function of (seed, rank, step, micro-batch, tag) only."""
    entropy = [int(seed) % 2**64, rank, step, micro, tag]
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))


def build_optimizer(params, config: TrainConfig) -> torch.optim.Optimizer:
    """The optimiser named in ``config`` over ``params``: parameters, or param groups (dicts with
    ``params`` and an ``lr_scale`` that multiplies the scheduled lr of that group)."""
    params = list(params)
    if params and isinstance(params[0], dict):
        params = [{**g, "params": [p for p in g["params"] if p.requires_grad]} for g in params]
        params = [g for g in params if g["params"]]
    else:
        params = [p for p in params if p.requires_grad]
    if not params:
        raise BadInput("the model has no trainable parameters: nothing to meta-train")
    if config.optimizer in ("adam", "adamw"):
        return adam(params, config.optimizer, lr=config.lr, betas=config.betas, eps=config.eps,
                    weight_decay=config.weight_decay)  # fmt: skip
    if config.optimizer == "rmsprop":
        return torch.optim.RMSprop(
            params,
            lr=config.lr,
            alpha=config.alpha,
            eps=config.eps,
            weight_decay=config.weight_decay,
            momentum=config.momentum,
        )
    raise BadConfig(f"train.optimizer must be adamw, adam or rmsprop, got {config.optimizer!r}")


def _num_episodes(batch: Any) -> int:
    count = getattr(batch, "num_episodes", None)
    if isinstance(count, int):
        return count
    patterns = getattr(batch, "patterns", batch)
    return int(patterns.shape[0]) if isinstance(patterns, Tensor) and patterns.dim() > 0 else 0


class Trainer:
    """Meta-trains any module with ``.loss(batch)`` on any source with ``.batch(step, rank)``.

    Args:
        model: an ``nn.Module`` whose ``loss(batch)`` returns (scalar tensor, dict of scalar logs);
            usually a registered Memory (then checkpoints can rebuild it by name).
        train_source: ``batch(step, rank=0)`` -> an object with ``.to(device)`` (e.g. EpisodeBatch).
        config: a ``TrainConfig``.
        out_dir: run directory for checkpoints and ``log.csv``; None keeps everything in memory.
        val_source: validation source; ``val_source.batch(i)`` for i < eval_batches each evaluation.
        device: "auto" (CUDA if available, else CPU), "cpu", "cuda", "cuda:1" or a torch.device.
        progress: show a tqdm bar (stderr, rank 0) with the loss and episodes/s.
        seed: seeds the per-step RNG of the model (the sources carry their own seeds).
        hooks: callables ``hook(trainer, step, row)`` run on every rank after each update.
        resume: continue from the latest checkpoint in ``out_dir`` (a fresh start when there is none).
        experiment: the ``Experiment`` to record in checkpoints (``train`` and the CLI pass it).
        handle_signals: turn the first Ctrl-C/SIGTERM into a clean stop (see the module doc). False
            leaves signals alone: a KeyboardInterrupt saves a checkpoint (between updates) and is
            re-raised, so a benchmark that trains several models ends on Ctrl-C.
    """

    def __init__(
        self,
        model: nn.Module,
        train_source: Any,
        config: TrainConfig,
        out_dir: str | Path | None = None,
        val_source: Any = None,
        device: str | torch.device = "auto",
        progress: bool = True,
        seed: int = 0,
        hooks: Sequence[Hook] | None = None,
        resume: bool = False,
        experiment: Experiment | None = None,
        handle_signals: bool = True,
    ):
        if not isinstance(config, TrainConfig):
            raise BadConfig(f"Trainer needs a TrainConfig, got {type(config).__name__}")
        if not callable(getattr(model, "loss", None)):
            raise BadInput(f"model {type(model).__name__} has no loss(batch) method")
        if not callable(getattr(train_source, "batch", None)):
            raise BadInput(f"train_source {type(train_source).__name__} has no batch(step, rank) method")
        self.dist = distributed.env_info()
        self.device = distributed.device_for(self.dist, device)
        self.model = model.to(self.device)
        self.train_source = train_source
        self.val_source = val_source
        self.config = config
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.progress = progress
        self.seed = int(seed)
        self.hooks = list(hooks or [])
        self.resume = resume
        self.experiment = experiment
        self.handle_signals = handle_signals
        # a model may ask for per-group lr multipliers: optimizer_groups() -> [{"params": [...], "lr_scale": s}]
        groups = getattr(self.model, "optimizer_groups", None)
        self.optimizer = build_optimizer(groups() if callable(groups) else self.model.parameters(), config)
        self.step = 0  # updates completed
        self.best_val: float | None = None
        self.best_step: int | None = None
        self.last_val: float | None = None
        self.last_checkpoint: Path | None = None
        self._wall_before = 0.0  # wall time of earlier (resumed) segments of this run
        self._ddp = None
        self._in_optimizer_step = False

    # -- checkpoints ---------------------------------------------------------------------------
    def _meta(self, metrics: dict[str, float]) -> dict[str, Any]:
        memory = None
        name = getattr(self.model, "registry_name", "")
        if name and hasattr(self.model, "config"):
            memory = {"name": name, **to_dict(self.model.config)}
        shape = getattr(self.model, "pattern_shape", None)
        return {
            "step": self.step,
            "memory": memory,
            "pattern_shape": list(shape) if shape is not None else None,
            "experiment": self.experiment.to_dict() if self.experiment is not None else None,
            "train_config": to_dict(self.config),
            "metrics": metrics,
            "trainer": {
                "best_val": self.best_val,
                "best_step": self.best_step,
                "wall": self._wall_before + (time.perf_counter() - self._t0),
                "seed": self.seed,
                "world_size": self.dist.world_size,
            },
        }

    def save(self, metrics: dict[str, float] | None = None, best: bool = False) -> Path | None:
        """Save ``step-XXXXXXXX/`` (or ``best/``) on rank 0; prune to ``keep_last``. Returns the path."""
        if self.out_dir is None or not self.dist.is_main:
            return None
        path = self.out_dir / (ckpt.BEST_DIR if best else ckpt.step_dir_name(self.step))
        ckpt.save_checkpoint(path, self.model, self.optimizer, self._meta(metrics or {}))
        if not best:
            self.last_checkpoint = path
            ckpt.prune_checkpoints(self.out_dir, self.config.keep_last)
        return path

    def _restore(self) -> None:
        """Load the latest checkpoint of ``out_dir`` (weights, optimiser, RNG, trainer state)."""
        path = ckpt.latest_checkpoint(self.out_dir) if self.out_dir is not None else None
        if path is None:
            logger.info("resume requested but %s holds no checkpoint: starting from step 0", self.out_dir)
            return
        meta = ckpt.load_weights(path, self.model, device=self.device)
        ckpt.load_optimizer(path, self.optimizer)
        ckpt.set_rng_state(ckpt.load_rng(path))
        state = meta.get("trainer", {})
        self.step = int(meta["step"])
        self.best_val = state.get("best_val")
        self.best_step = state.get("best_step")
        self._wall_before = float(state.get("wall", 0.0))
        self.last_checkpoint = path
        old = meta.get("train_config") or {}
        changed = sorted(k for k, v in to_dict(self.config).items() if k in old and old[k] != v and k != "steps")
        if changed:
            logger.warning("resuming %s with changed train settings: %s", path, ", ".join(changed))
        logger.info("resumed from %s at step %d", path, self.step)

    # -- one update ----------------------------------------------------------------------------
    def _loss(self, batch: Any) -> tuple[Tensor, dict[str, Any]]:
        out = self._ddp(batch) if self._ddp is not None else self.model.loss(batch)
        if not (isinstance(out, tuple) and len(out) == 2 and isinstance(out[1], dict)):
            raise BadInput(f"{type(self.model).__name__}.loss(batch) must return (scalar tensor, dict of logs)")
        loss, logs = out
        if not isinstance(loss, Tensor) or loss.numel() != 1:
            raise BadInput(f"{type(self.model).__name__}.loss(batch) must return a scalar tensor, got {loss!r}")
        if not loss.requires_grad:
            raise BadInput(f"{type(self.model).__name__}.loss(batch) does not depend on any trainable parameter")
        return loss.reshape(()), logs

    def _scalars(self, loss: Tensor, logs: dict[str, Any]) -> tuple[list[str], Tensor]:
        """Names and one float32 vector of [loss, *logs] (detached, on the device)."""
        names = ["loss"]
        values = [loss.detach().float()]
        for key in sorted(logs):
            value = logs[key]
            value = value.detach() if isinstance(value, Tensor) else torch.as_tensor(value)
            if value.numel() != 1:
                raise BadInput(f"loss log '{key}' must be a scalar, got shape {tuple(value.shape)}")
            names.append(f"log_{key}" if key in _RESERVED else str(key))
            values.append(value.to(self.device, torch.float32).reshape(()))
        return names, torch.stack(values)

    def _check_finite(self, names: list[str], values: list[float], where: str) -> None:
        bad = [f"{n}={v}" for n, v in zip(names, values) if not math.isfinite(v)]
        if bad:
            term = "loss" if not math.isfinite(values[0]) else "log term"
            raise NumericalError(
                f"non-finite {term} {where} at step {self.step + 1}: {', '.join(bad)} "
                f"(all terms: {', '.join(f'{n}={v:.4g}' for n, v in zip(names, values))})"
            )

    def _gradients(self) -> float:
        """Zero non-finite gradient entries if configured, check, clip; return the global norm."""
        params = [p for g in self.optimizer.param_groups for p in g["params"] if p.grad is not None]
        if not params:
            return 0.0
        grads = [p.grad for p in params]
        if self.config.zero_nonfinite_grads:
            for g in grads:
                torch.nan_to_num_(g, nan=0.0, posinf=0.0, neginf=0.0)
        norm = torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in grads]))
        norm_value = float(norm)
        if not math.isfinite(norm_value):
            names = {id(p): n for n, p in self.model.named_parameters()}
            bad = [names.get(id(p), "?") for p in params if not torch.isfinite(p.grad).all()]
            raise NumericalError(
                f"non-finite gradient at step {self.step + 1} in parameters: {', '.join(bad) or 'norm overflow'} "
                "(set train.zero_nonfinite_grads=true to zero such entries)"
            )
        if self.config.clip_norm is not None and norm_value > self.config.clip_norm:
            scale = self.config.clip_norm / (norm_value + 1e-6)
            torch._foreach_mul_(grads, scale)
        return norm_value

    def _update(self, stop: bool) -> tuple[dict[str, float], int, bool]:
        """One optimiser update; returns (logs, episodes seen on all ranks, stop requested on any rank)."""
        cfg = self.config
        lr = cfg.lr_at(self.step)
        for group in self.optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        self.optimizer.zero_grad(set_to_none=True)
        self.model.train()
        total: Tensor | None = None
        names: list[str] = []
        episodes = 0
        anomaly = torch.autograd.detect_anomaly() if cfg.detect_anomaly else contextlib.nullcontext()
        for micro in range(cfg.accumulate):
            torch.manual_seed(step_seed(self.seed, self.dist.rank, self.step, micro))
            batch = self.train_source.batch(self.step * cfg.accumulate + micro, self.dist.rank)
            batch = batch.to(self.device)
            episodes += _num_episodes(batch)
            last = micro == cfg.accumulate - 1
            sync = self._ddp.no_sync() if self._ddp is not None and not last else contextlib.nullcontext()
            with sync, anomaly:
                loss, logs = self._loss(batch)
                (loss / cfg.accumulate).backward()
            micro_names, values = self._scalars(loss, logs)
            if total is None:
                names, total = micro_names, values
            elif micro_names != names:
                raise BadInput(f"loss log keys changed between micro-batches: {names[1:]} vs {micro_names[1:]}")
            else:
                total = total + values
        mean = total / cfg.accumulate
        flags = torch.tensor([float(stop)], device=self.device)
        reduced = distributed.all_reduce_mean(torch.cat([mean, flags]))
        values = reduced[:-1].tolist()
        any_stop = float(reduced[-1]) > 0
        self._check_finite(names, values, "in training")
        grad_norm = self._gradients()
        self._in_optimizer_step = True
        self.optimizer.step()
        self.step += 1
        self._in_optimizer_step = False
        row = dict(zip(names, values))
        row["grad_norm"] = grad_norm
        row["lr"] = lr
        return row, episodes * self.dist.world_size, any_stop

    # -- evaluation ----------------------------------------------------------------------------
    def evaluate(self) -> dict[str, float]:
        """Mean loss and logs over ``val_source.batch(i)``, i < eval_batches (fixed RNG per batch)."""
        if self.val_source is None or self.config.eval_batches == 0:
            return {}
        self.model.eval()
        grad = torch.enable_grad() if getattr(self.model, "needs_grad_at_eval", False) else torch.no_grad()
        total = None
        names: list[str] = []
        with grad:
            for i in range(self.config.eval_batches):
                torch.manual_seed(step_seed(self.seed, 0, i, tag=1))
                batch = self.val_source.batch(i).to(self.device)
                loss, logs = self.model.loss(batch)
                if not isinstance(loss, Tensor) or loss.numel() != 1:
                    raise BadInput(f"{type(self.model).__name__}.loss(batch) must return a scalar tensor")
                names, values = self._scalars(loss.reshape(()), logs)
                total = values if total is None else total + values
        self.model.train()
        values = (total / self.config.eval_batches).tolist()
        self._check_finite([f"val_{n}" for n in names], values, "in validation")
        return {("val_loss" if n == "loss" else f"val_{n}"): v for n, v in zip(names, values)}

    # -- the loop ------------------------------------------------------------------------------
    def fit(self, resume: bool | None = None) -> TrainResult:
        """Run until ``config.steps`` updates (or a stop request / time budget); see the module doc."""
        resume = self.resume if resume is None else resume
        self._t0 = time.perf_counter()
        created_group = distributed.init_process_group(self.dist, self.device)
        try:
            return self._fit(resume)
        finally:
            if created_group:
                # Release DDP's reducer while the group is alive: destroying it after the group (when the
                # trainer is collected) hung one gloo rank in about one run of five.
                self._ddp = None
                gc.collect()
                distributed.destroy_process_group()

    def _fit(self, resume: bool) -> TrainResult:
        cfg = self.config
        main = self.dist.is_main
        csv_log = writer = None
        if self.out_dir is not None:
            if main:
                self.out_dir.mkdir(parents=True, exist_ok=True)
                ckpt.clean_temporary(self.out_dir)
            distributed.barrier()
            if not resume and ckpt.step_checkpoints(self.out_dir):  # checked on every rank: all raise
                raise BadConfig(
                    f"{self.out_dir} already holds checkpoints: resume it (--resume) or choose another --out"
                )
        if resume:
            self._restore()
        if self.dist.distributed:
            self._ddp = distributed.wrap(self.model, self.device, cfg.find_unused_parameters)
        if self.out_dir is not None and main:
            csv_log = CsvLog(self.out_dir / "log.csv", self.step if resume else None)
            writer = open_tensorboard(self.out_dir / "tb", self.step if resume else None) if cfg.tensorboard else None
        start = self.step
        bar = None
        if self.progress and main:
            from tqdm.auto import tqdm

            bar = tqdm(total=cfg.steps, initial=start, file=sys.stderr, desc="train", dynamic_ncols=True)
        result = TrainResult(step=self.step, out_dir=self.out_dir, best_val=self.best_val, best_step=self.best_step)
        last_row: dict[str, float] = {}
        interval_t, interval_episodes = time.perf_counter(), 0
        try:
            with StopRequests(enabled=self.handle_signals) as stop:
                while self.step < cfg.steps:
                    over_time = cfg.max_seconds is not None and time.perf_counter() - self._t0 > cfg.max_seconds
                    row, episodes, any_stop = self._update(stop.requested or over_time)
                    interval_episodes += episodes
                    last_row = row
                    result.loss = row["loss"]
                    final = self.step == cfg.steps or any_stop
                    val = {}
                    if (cfg.eval_every and self.step % cfg.eval_every == 0) or final:
                        val = self._evaluate_and_keep_best(row) if main else {}
                        distributed.barrier()
                    if self.step % cfg.log_every == 0 or final or val:
                        now = time.perf_counter()
                        row = {
                            "step": self.step,
                            **row,
                            **val,
                            "episodes_per_s": interval_episodes / max(now - interval_t, 1e-9),
                            "wall": self._wall_before + now - self._t0,
                        }
                        interval_t, interval_episodes = now, 0
                        if csv_log is not None:
                            csv_log.write(row)
                        if writer is not None:
                            for key, value in row.items():
                                if key != "step" and isinstance(value, float):
                                    writer.add_scalar(key, value, self.step)
                        if bar is not None:
                            bar.set_postfix(
                                loss=f"{row['loss']:.4g}", eps=f"{row['episodes_per_s']:.1f}", refresh=False
                            )
                    if bar is not None:
                        bar.update(1)
                    if (cfg.checkpoint_every and self.step % cfg.checkpoint_every == 0) or final:
                        self.save({**last_row, **val})
                        distributed.barrier()
                    for hook in self.hooks:
                        hook(self, self.step, row)
                    if any_stop:
                        result.interrupted = stop.requested or not over_time
                        result.stopped_by_time = not result.interrupted
                        break
        except KeyboardInterrupt:
            # A second Ctrl-C, or one that arrived where no handler could be installed.
            logger.warning("interrupted at step %d", self.step)
            result.interrupted = True
            if not self.dist.distributed and self.step > start and not self._in_optimizer_step:
                self.save(last_row)
            if not self.handle_signals:
                raise
        finally:
            if bar is not None:
                bar.close()
            if writer is not None:
                writer.close()
        result.step = self.step
        result.val_loss = self.last_val
        result.best_val, result.best_step = self.best_val, self.best_step
        if self.out_dir is not None:
            result.checkpoint = self.last_checkpoint
            best = self.out_dir / ckpt.BEST_DIR
            result.best_checkpoint = best if (best / ckpt.META_FILE).is_file() else None
            result.log_path = self.out_dir / "log.csv"
        result.wall_seconds = time.perf_counter() - self._t0
        result.run_wall_seconds = self._wall_before + result.wall_seconds
        return result

    def _evaluate_and_keep_best(self, train_row: dict[str, float]) -> dict[str, float]:
        val = self.evaluate()
        if "val_loss" in val:
            self.last_val = val["val_loss"]
            if self.best_val is None or val["val_loss"] < self.best_val:
                self.best_val, self.best_step = val["val_loss"], self.step
                self.save({**train_row, **val}, best=True)
        return val


def fit_best(
    model: nn.Module, train_source: Any, config: TrainConfig, val_source: Any, **trainer_options: Any
) -> TrainResult:
    """Train ``model`` and leave it holding the weights of its best validation evaluation (early stopping's model
    selection), through a temporary checkpoint folder; without a validation checkpoint, the final weights.
    ``trainer_options`` go to ``Trainer`` (device, progress, seed, hooks, ...)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(model, train_source, config, out_dir=tmp, val_source=val_source, **trainer_options)
        result = trainer.fit()
        if result.best_checkpoint is not None:
            ckpt.load_weights(result.best_checkpoint, model, device=trainer.device)
    return result
