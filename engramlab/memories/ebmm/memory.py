"""EBMM memories (papers/000; variants of papers/001): write = a few gradient steps on the writable
``memory`` parameters of an energy network, read = projected Nesterov descent on the energy.

Registered: ``ebmm-strings`` (gated RNN, ±1 strings, App. B.1), ``ebmm-fc`` (ResNet + FC memory,
B.2), ``ebmm-conv`` (ResNet + conv memory, B.3), ``ebmm-imagenet`` (B.4, 64×64).

The write is generic over the rule (``write_rule="gradient" | "maml" | "mplp"``): the memory builds
``fast`` = θ̄ repeated per episode (dict of (B, *param) tensors, keys = dotted names of parameters in
modules named ``memory``), an objective ``(fast, episode) -> (B, 3)`` with the columns [E, α‖∇ₓE‖²,
β‖θ − θ̄‖²] (``write.TERMS``), and calls ``self.rule(fast, episode, objective)``. A rule is built
with ``build_rule(name, fast_names=..., steps=..., terms=3, first_order=..., **write_rule_options)``;
it may also read ``memory.energy_net`` if it needs the architecture.

Meta-training loss (App. A.4): the step-wise reconstruction loss Σ_k mean_i ‖x_i − x_i^(k)‖² over
all K read iterates (``loss_steps="final"`` keeps only x^(K)); ``loss="ssim+mse"`` adds 1 − SSIM
per iterate (papers/001). Second order through write and read; ``first_order=True`` drops the
write's inner graph (the read must keep its graph, or θ would get no meta-gradient).

Example::

    mem = build_memory("ebmm-strings", pattern_shape=(128,))
    state = mem.write(patterns)               # (B, T, 128) in [-1, 1]
    recon = mem.read(queries, state)          # (B, N, 128)
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import Tensor, nn

from engramlab.episodes.batch import EpisodeBatch
from engramlab.errors import BadConfig, BadInput, NumericalError
from engramlab.memories.base import Memory, MemoryConfig, State, register
from engramlab.memories.ebmm import compiled
from engramlab.memories.ebmm.energy import EnergyNet, GatedRNNEnergy, ResNetConvEnergy, ResNetFCEnergy
from engramlab.memories.ebmm.read import DecoderRead, NesterovRead
from engramlab.memories.ebmm.ssim import ssim
from engramlab.memories.ebmm.write import TERMS, writing_terms
from engramlab.nn.fast import fast_paths_enabled
from engramlab.rules.base import build_rule

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class EBMMConfig(MemoryConfig):
    """Hyperparameters of an EBMM memory (defaults = papers/000 where it gives them).

    Attributes:
        dynamic_size: writable width (None: the architecture's paper default).
        channels, hidden_size, hops: architecture sizes (None: the architecture's paper default).
        write_rule: "gradient" (App. C), "maml" (papers/001) or "mplp".
        write_steps: inner gradient steps of the write.
        write_lr: initial learning rate of every (layer, term) (App. C: 1e-4).
        learn_write_lr: meta-learn the write rates (False: fixed).
        write_rule_options: extra keyword arguments for the rule's constructor.
        alpha, beta: weights of the ‖∇ₓE‖² and ‖θ − θ̄‖² terms (0 removes a term).
        read: "gradient" (projected Nesterov, App. A) or "decoder" (papers/001).
        read_steps: K. read_gamma: γ(1). read_decay: σ(η) at init. read_momentum: ψ(1).
        learn_read_steps: meta-learn γ(1), η, ψ, ζ (False: the fixed schedule of papers/001).
        loss: "mse" or "ssim+mse". loss_steps: "all" (step-wise, A.4) or "final".
        first_order: first-order meta-gradient through the write.
        write_reduction: "mean" averages the energy and gradient terms of the writing loss over the T
            patterns (our reading of eq. 3), "sum" adds them up, so that a learned write rate does not
            have to grow with T (used by the curriculum of ``ebmm-ladder``).
        rate_lr_scale: multiplier of the meta-learning rate for the scalar step sizes (the write rule's
            rates, the read's γ(1), η, ψ(1), ζ). Adam moves a parameter by about lr per update, so at the
            network's lr these travel one unit of softplus⁻¹ in ~1/lr updates; > 1 lets them keep up.
        compile: train through one ``torch.compile``'d function of write, read and loss
            (``memories/ebmm/compiled.py``, issue 15): the same math; on this 2-core CPU 1.8× faster training
            steps (ebmm-strings-quick, 70 vs 127 ms) after a compilation of 150-200 s the first time (~8 s
            from torch's on-disk cache on later runs of the same settings), so off by default. Training mode
            with the ``gradient`` or ``maml`` rule (second order) and the Nesterov read only; everything else
            stays on the plain path, which is also the fall-back.
        memory_bias_init: initial value of the biases of the writable ``memory`` layers (θ̄'s bias).
            App. D gives He initialisation for the weights only; 0 is the usual bias init. A nonzero
            value puts tanh'(b + Wx) off its even point, so ∂E/∂(memory output) depends on the sign
            of W̄x and the energy-term write gains a Hebbian part (used by the ebmm-strings quick preset).
    """

    dynamic_size: int | None = None
    channels: int | None = None
    hidden_size: int | None = None
    hops: int | None = None
    write_rule: str = "gradient"
    write_steps: int = 5
    write_lr: float = 1e-4
    learn_write_lr: bool = True
    write_rule_options: dict[str, Any] = field(default_factory=dict)
    alpha: float = 1.0
    beta: float = 1.0
    read: str = "gradient"
    read_steps: int = 5
    read_gamma: float = 1.0
    read_decay: float = 0.95
    read_momentum: float = 0.5
    learn_read_steps: bool = True
    loss: str = "mse"
    loss_steps: str = "all"
    first_order: bool = False
    memory_bias_init: float = 0.0
    write_reduction: str = "mean"
    rate_lr_scale: float = 1.0
    compile: bool = False

    def __post_init__(self) -> None:
        if self.write_reduction not in ("mean", "sum"):
            raise BadConfig(f"memory.write_reduction must be 'mean' or 'sum', got {self.write_reduction!r}")
        if not self.rate_lr_scale > 0:
            raise BadConfig(f"memory.rate_lr_scale must be positive, got {self.rate_lr_scale}")
        if self.read not in ("gradient", "decoder"):
            raise BadConfig(f"memory.read must be 'gradient' or 'decoder', got {self.read!r}")
        if self.loss not in ("mse", "ssim+mse"):
            raise BadConfig(f"memory.loss must be 'mse' or 'ssim+mse', got {self.loss!r}")
        if self.loss_steps not in ("all", "final"):
            raise BadConfig(f"memory.loss_steps must be 'all' or 'final', got {self.loss_steps!r}")
        if self.write_steps < 1 or self.read_steps < 1:
            raise BadConfig(f"write_steps and read_steps must be ≥ 1, got {self.write_steps}, {self.read_steps}")
        if self.alpha < 0 or self.beta < 0:
            raise BadConfig(f"alpha and beta must be ≥ 0, got {self.alpha}, {self.beta}")


@dataclass
class EBMMState(State):
    """Written fast weights: dotted parameter name -> (B, *param)."""

    fast: dict[str, Tensor]


class EBMM(Memory):
    """Energy-based memory; subclasses choose the energy architecture (``build_energy``)."""

    Config: ClassVar[type] = EBMMConfig

    def __init__(self, config: EBMMConfig, pattern_shape: tuple[int, ...]):
        super().__init__(config, pattern_shape)
        self.energy_net = self.build_energy(config, self.pattern_shape)
        # normalised feature maps cannot write a blank image (``_check_episode``); decided once, not per write
        self._compile_warned = False
        self._normalises = any(isinstance(m, (nn.GroupNorm, nn.LayerNorm)) for m in self.energy_net.modules())
        names = self.energy_net.memory_names()
        if config.memory_bias_init:
            params = dict(self.energy_net.named_parameters())
            with torch.no_grad():
                for name in names:
                    if name.endswith("bias"):
                        params[name].fill_(config.memory_bias_init)
        options = dict(config.write_rule_options)
        options.setdefault("lr" if config.write_rule == "maml" else "lr_init", config.write_lr)
        if config.write_rule in ("gradient", "maml"):
            options.setdefault("learn_lr", config.learn_write_lr)
        self.rule = build_rule(
            config.write_rule,
            fast_names=names,
            steps=config.write_steps,
            terms=len(TERMS),
            first_order=config.first_order,
            **options,
        )
        if config.read == "gradient":
            self.reader = NesterovRead(
                config.read_steps, config.read_gamma, config.read_decay, config.read_momentum, config.learn_read_steps
            )
        else:
            self.reader = DecoderRead(self.pattern_shape)

    @staticmethod
    def build_energy(config: EBMMConfig, pattern_shape: tuple[int, ...]) -> EnergyNet:
        raise NotImplementedError

    @staticmethod
    def _sizes(config: EBMMConfig, conv: bool = False, **defaults: Any) -> dict[str, Any]:
        """Architecture kwargs: config values where set, else the paper's defaults."""
        sizes = {k: (getattr(config, k) if getattr(config, k) is not None else v) for k, v in defaults.items()}
        # the writable part is split from a layer of hidden_size units (B.1, B.2) or 4·channels maps (B.3, B.4)
        whole = 4 * sizes["channels"] if conv else sizes["hidden_size"]
        if not 0 < sizes["dynamic_size"] < whole:
            raise BadConfig(
                f"dynamic_size must lie in (0, {whole}) (the layer it is split from), got {sizes['dynamic_size']}"
            )
        return sizes

    def optimizer_groups(self) -> list[dict[str, Any]]:
        """Parameter groups for the trainer: the scalar step sizes (write rates, read schedule) get
        ``rate_lr_scale`` times the meta-learning rate; everything else the plain rate."""
        step_sizes = ("raw_lr", "raw_gamma", "eta", "raw_momentum", "zeta")  # GradientRule, NesterovRead
        rates = [p for n, p in self.named_parameters() if n.rsplit(".", 1)[-1] in step_sizes]
        rest = [p for n, p in self.named_parameters() if n.rsplit(".", 1)[-1] not in step_sizes]
        return [{"params": rest, "lr_scale": 1.0}, {"params": rates, "lr_scale": self.config.rate_lr_scale}]

    # -- protocol -------------------------------------------------------------------------------
    def memory_floats(self, episode_length: int | None = None) -> int:
        """Writable floats per episode (the ``memory`` modules' parameters; independent of T)."""
        return self.energy_net.memory_floats()

    def energy(self, x: Tensor, state: EBMMState) -> Tensor:
        """E(x; θ_written): (B, N, *pattern) -> (B, N)."""
        return self.energy_net(x, state.fast)

    def write(self, episode: Tensor) -> EBMMState:
        """(B, T, *pattern) -> fast weights after ``write_steps`` steps of the rule (eq. 3)."""
        self._check_episode(episode)
        cfg = self.config
        anchor = self.energy_net.initial_fast(episode.shape[0])
        if not self.training:
            anchor = {n: t.detach() for n, t in anchor.items()}

        def objective(fast: dict[str, Tensor], patterns: Tensor) -> Tensor:
            return writing_terms(self.energy_net, fast, anchor, patterns, cfg.alpha, cfg.beta, cfg.write_reduction)

        with torch.enable_grad():
            fast = self.rule(dict(anchor), episode, objective)
        return EBMMState(fast=fast)

    def _check_episode(self, episode: Tensor) -> None:
        """``check_patterns``, and: the image energies normalise every feature map (GroupNorm over C, H, W). An
        all-zero image gives constant maps of variance 0: their write gradient (the α‖∇ₓE‖² term differentiated
        again) grows as (var + eps)^-3/2 per normalisation and overflows, so refuse such an image with its position
        (NumericalError, the hardening contract's error for a degenerate episode) instead of failing later with an
        anonymous non-finite gradient."""
        self.check_patterns(episode, "episode")
        if not self._normalises:
            return
        blank = episode.flatten(2).abs().amax(-1) == 0  # (B, T)
        if blank.any():
            b, t = (int(i) for i in blank.nonzero()[0])
            raise NumericalError(
                f"episode {b}, pattern {t} is an all-zero image: memory '{self.registry_name}' normalises its "
                "feature maps and cannot write a blank image (its write gradient is not finite); drop it or "
                "add any content"
            )

    def read_iterates(self, query: Tensor, state: EBMMState) -> list[Tensor]:
        """All K read iterates, each (B, N, *pattern)."""
        fast = state.fast
        self._check_query(query, next(iter(fast.values())).shape[0])
        low, high = self.value_range
        with torch.enable_grad():
            return self.reader(lambda x: self.energy_net(x, fast), query, low, high, create_graph=self.training)

    def _check_query(self, query: Tensor, episodes: int) -> None:
        """``check_patterns``, and one query set per written episode."""
        self.check_patterns(query, "query")
        if query.shape[0] != episodes:
            raise BadInput(f"query has {query.shape[0]} episodes but the written state has {episodes}")

    def read(self, query: Tensor, state: EBMMState) -> Tensor:
        """(B, N, *pattern) queries -> (B, N, *pattern) reconstructions (the last iterate)."""
        out = self.read_iterates(query, state)[-1]
        return out if self.training else out.detach()

    def reconstruction_loss(self, read: Tensor, target: Tensor) -> Tensor:
        """Scalar: mean over queries of ‖x − x̂‖² (+ 1 − SSIM for ``loss="ssim+mse"``)."""
        loss = (read - target).pow(2).flatten(2).sum(-1).mean()
        if self.config.loss == "ssim+mse":
            if len(self.pattern_shape) != 3:
                raise BadConfig("loss 'ssim+mse' needs image patterns (C, H, W)")
            low, high = self.value_range
            loss = loss + (1 - ssim(read.flatten(0, 1), target.flatten(0, 1), data_range=high - low)).mean()
        return loss

    def loss(self, batch: EpisodeBatch) -> tuple[Tensor, dict[str, Tensor]]:
        """Step-wise reconstruction loss over the K read iterates (App. A.4) and logs."""
        if batch.queries is None or batch.targets is None:
            raise BadInput(f"memory '{self.registry_name}' needs a batch with queries and targets")
        if batch.queries.shape[2:] != batch.patterns.shape[2:]:
            raise BadInput(
                f"queries have pattern shape {tuple(batch.queries.shape[2:])}, "
                f"stored patterns {tuple(batch.patterns.shape[2:])}"
            )
        if self.training and self.config.compile and fast_paths_enabled():
            out = self._compiled_loss(batch)
            if out is not None:
                return out
        state = self.write(batch.patterns)
        iterates = self.read_iterates(batch.queries, state)
        used = iterates if self.config.loss_steps == "all" else iterates[-1:]
        loss = sum(self.reconstruction_loss(x, batch.targets) for x in used)
        return loss, self.read_logs(iterates[-1], batch.targets)

    def read_logs(self, final: Tensor, targets: Tensor) -> dict[str, Tensor]:
        """Detached logs of the last read iterate: squared error, and the fraction of bits wrong after binarising."""
        final, mid = final.detach(), sum(self.value_range) / 2
        return {
            "sq_err": (final - targets).pow(2).flatten(2).sum(-1).mean(),
            "hamming": ((final > mid) != (targets > mid)).float().mean(),
        }

    def _compiled_loss(self, batch: EpisodeBatch) -> tuple[Tensor, dict[str, Tensor]] | None:
        """``loss`` through the compiled step (``compiled.py``); None where it does not apply (the caller then
        runs the plain step). The input checks of ``write`` and ``read_iterates`` run here, outside the graph."""
        reason = compiled.supported(self)
        if reason is not None:
            if not self._compile_warned:
                log.warning("EBMM: memory.compile is set but %s: training on the plain path", reason)
                self._compile_warned = True
            return None
        self._check_episode(batch.patterns)
        self._check_query(batch.queries, batch.patterns.shape[0])
        return compiled.compiled_meta_loss(self, batch.patterns, batch.queries, batch.targets)


@register("ebmm-strings")
class EBMMStrings(EBMM):
    """Gated-RNN EBMM for ±1 binary strings (App. B.1): 8127 writable floats at d = 128."""

    value_range: ClassVar[tuple[float, float]] = (-1.0, 1.0)
    default_pattern_shape: ClassVar[tuple[int, ...]] = (128,)

    @staticmethod
    def build_energy(config: EBMMConfig, pattern_shape: tuple[int, ...]) -> EnergyNet:
        if len(pattern_shape) != 1:
            raise BadConfig(f"ebmm-strings needs 1-d patterns (D,), got {pattern_shape}")
        sizes = EBMM._sizes(config, hidden_size=1024, hops=5, dynamic_size=(pattern_shape[0] - 1) // 2)
        return GatedRNNEnergy(pattern_shape[0], sizes["hidden_size"], sizes["hops"], sizes["dynamic_size"])


def _image_shape(name: str, pattern_shape: tuple[int, ...]) -> tuple[int, int]:
    if len(pattern_shape) != 3 or pattern_shape[1] != pattern_shape[2]:
        raise BadConfig(f"{name} needs square image patterns (C, H, H), got {pattern_shape}")
    return pattern_shape[0], pattern_shape[1]


@register("ebmm-fc")
class EBMMFC(EBMM):
    """ResNet encoder + fully-connected memory (App. B.2) on [0, 1] images (C, H, H)."""

    default_pattern_shape: ClassVar[tuple[int, ...]] = (1, 32, 32)

    @staticmethod
    def build_energy(config: EBMMConfig, pattern_shape: tuple[int, ...]) -> EnergyNet:
        c, s = _image_shape("ebmm-fc", pattern_shape)
        sizes = EBMM._sizes(config, channels=32, dynamic_size=128, hidden_size=512, hops=3)
        return ResNetFCEnergy(c, s, **sizes)


@register("ebmm-conv")
class EBMMConv(EBMM):
    """ResNet + convolutional memory (App. B.3) on [0, 1] images; ``dynamic_size`` sets memory size."""

    default_pattern_shape: ClassVar[tuple[int, ...]] = (1, 32, 32)

    @staticmethod
    def build_energy(config: EBMMConfig, pattern_shape: tuple[int, ...]) -> EnergyNet:
        c, s = _image_shape("ebmm-conv", pattern_shape)
        sizes = EBMM._sizes(config, conv=True, channels=32, dynamic_size=8, hidden_size=128, hops=3)
        return ResNetConvEnergy(c, s, **sizes)


@register("ebmm-imagenet")
class EBMMImageNet(EBMM):
    """The 64×64 ImageNet variant (App. B.4): 64 channels, dynamic size 8, hidden 256."""

    default_pattern_shape: ClassVar[tuple[int, ...]] = (3, 64, 64)

    @staticmethod
    def build_energy(config: EBMMConfig, pattern_shape: tuple[int, ...]) -> EnergyNet:
        c, s = _image_shape("ebmm-imagenet", pattern_shape)
        sizes = EBMM._sizes(config, conv=True, channels=64, dynamic_size=8, hidden_size=256, hops=3)
        return ResNetConvEnergy(c, s, imagenet=True, **sizes)
