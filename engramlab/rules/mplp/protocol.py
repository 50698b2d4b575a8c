"""MPLP: a meta-learned message-passing learning protocol (Randazzo, Niklasson, Mordvintsev 2020; paper 004).

A feed-forward task network ``sizes[0]-sizes[1]-...-sizes[L]`` (dense layers, an activation between them,
a loss node on top) is trained without backpropagation: every node sends a learned message backwards
(rule g, eq. 5) and every weight/bias node computes its own update (rule f, eq. 7):

* loss node: input ``[loss_n, ŷ_k, y_k]`` per output unit k (eq. 6, the 1-d loss message) -> message (M,);
* weight node w_ij: input ``[m_j, w_ij, x_i]`` -> message to input i (M,) and update Δw_ij; the messages
  to input i are averaged over its K fan-out weights (eq. 9);
* bias node b_j: input ``[m_j, b_j]`` -> update Δb_j;
* activation node: input ``[m_j, z_j]`` (z the stored pre-activation) -> message (M,).

Updates are averaged over the minibatch (eq. 8). Task networks are batched over tasks: weights are
(B, n_in, n_out) tensors and every learner runs on (B, N, n_in, n_out, F) feature tensors at once.

Learners are either stateless MLPs (80-40 hidden, tanh output; Sec. 3) or stateful GRUs whose candidate
uses MLPs (eqs. 10-12), with the carry averaged over the minibatch to give one state per node.
Normalisation (Sec. 3, "Normalization"): learner inputs are standardised with statistics gathered
during a calibration phase and then frozen; f outputs are centred on their calibration mean and scaled
to 0.2·std of the layer's initial weight matrix times a meta-trained scale.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from engramlab.errors import BadConfig, BadInput, NumericalError
from engramlab.nn.fast import Compiled

Sharing = Literal["layer", "kind", "all"]
_ACTIVATIONS: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": torch.relu,
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "linear": lambda z: z,
    "step": lambda z: (z > 0).to(z.dtype),
}


_DERIVATIVES: dict[str, Callable[[Tensor], Tensor]] = {
    "relu": lambda z: (z > 0).to(z.dtype),
    "linear": torch.ones_like,
    "sigmoid": lambda z: torch.sigmoid(z) * (1 - torch.sigmoid(z)),
    "tanh": lambda z: 1 - torch.tanh(z) ** 2,
}


def activation_fn(name: str) -> Callable[[Tensor], Tensor]:
    """The task network's activation by name ("relu", "sigmoid", "tanh", "linear", "step")."""
    if name not in _ACTIVATIONS:
        raise BadConfig(f"unknown activation '{name}'; known: {', '.join(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]


# ----------------------------------------------------------------------------------------- task nets
def net_forward(params: Sequence[Tensor], x: Tensor, activation: str) -> tuple[Tensor, list[Tensor], list[Tensor]]:
    """Batched dense network. params = [W1, b1, W2, b2, ...] with W (B, n_in, n_out), b (B, n_out).

    Args: x (B, N, n_in). Returns (output (B, N, n_out_last), layer inputs [x_0..x_{L-1}],
    pre-activations [z_1..z_L]).
    """
    act = activation_fn(activation)
    inputs, pre = [], []
    h = x
    num_layers = len(params) // 2
    for layer in range(num_layers):
        w, b = params[2 * layer], params[2 * layer + 1]
        inputs.append(h)
        z = torch.baddbmm(b.unsqueeze(1), h, w)  # (B, N, n_out)
        pre.append(z)
        h = act(z) if layer < num_layers - 1 else z
    return h, inputs, pre


def per_example_loss(output: Tensor, target: Tensor, kind: str) -> Tensor:
    """(B, N) losses: "mse" mean over outputs of (ŷ−y)², "ce" softmax cross-entropy (target one-hot or index)."""
    if kind == "mse":
        return (output - target).pow(2).mean(-1)
    if kind == "ce":
        if target.dtype == torch.long:
            return F.cross_entropy(output.transpose(1, 2), target, reduction="none")
        return -(target * output.log_softmax(-1)).sum(-1)
    raise BadConfig(f"unknown loss '{kind}' (use 'mse' or 'ce')")


def init_params(
    sizes: Sequence[int],
    batch: int,
    generator: torch.Generator | None = None,
    device=None,
    scheme: Literal["torch", "xavier"] = "torch",
) -> list[Tensor]:
    """Fresh task-network weights per task, b = 0.

    ``scheme``: "torch" W ~ U(±1/√n_in) (PyTorch's Linear default); "xavier" W ~ U(±√(6/(n_in+n_out)))
    (Glorot uniform, the Keras Dense default). On the sigmoid 144-50-10 MNIST network the Xavier weights
    are ~2x larger, and plain SGD at lr 1 reaches 0.29 test accuracy after 20 steps against 0.17 with the
    PyTorch default (issue 14's sanity check).
    """
    if scheme not in ("torch", "xavier"):
        raise BadConfig(f"init scheme must be 'torch' or 'xavier', got {scheme!r}")
    params = []
    for n_in, n_out in zip(sizes[:-1], sizes[1:]):
        bound = 1.0 / math.sqrt(n_in) if scheme == "torch" else math.sqrt(6.0 / (n_in + n_out))
        w = (torch.rand(batch, n_in, n_out, generator=generator, device=device) * 2 - 1) * bound
        params += [w, torch.zeros(batch, n_out, device=device)]
    return params


# ------------------------------------------------------------------------------------------ learners
class _SigmoidTanh(torch.autograd.Function):
    """tanh(z) computed as 2·σ(2z) − 1 in one buffer (≈3x faster than ``torch.tanh`` on one CPU thread).

    Measured on 57.6k x 80 floats (one thread, AVX512 build): torch.tanh 21 ms, this 7 ms; the two agree to
    2e-7 (float32). The backward is tanh's own, (1 − y²)·g.
    """

    @staticmethod
    def forward(ctx, z: Tensor) -> Tensor:
        y = z.mul(2.0)
        y.sigmoid_()
        y.mul_(2.0).sub_(1.0)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:
        (y,) = ctx.saved_tensors
        return torch.ops.aten.tanh_backward(grad, y)


def _tanh(x: Tensor, fast: bool) -> Tensor:
    """``torch.tanh`` (plain path) or :class:`_SigmoidTanh` (fast path; float32 on CPU only)."""
    if fast and x.dtype == torch.float32 and x.device.type == "cpu":
        return _SigmoidTanh.apply(x)
    return torch.tanh(x)


def _mlp(n_in: int, n_out: int, hidden: Sequence[int], act: str, final_tanh: bool) -> nn.Sequential:
    layers: list[nn.Module] = []
    dims = [n_in, *hidden]
    for a, b in zip(dims[:-1], dims[1:]):
        layers += [nn.Linear(a, b), nn.ReLU() if act == "relu" else nn.Tanh()]
    layers.append(nn.Linear(dims[-1], n_out))
    if final_tanh:
        layers.append(nn.Tanh())
    for m in layers:
        if isinstance(m, nn.Linear):  # NOTES: learner W ~ N(0, 0.05), b = 0
            nn.init.normal_(m.weight, 0.0, 0.05)
            nn.init.zeros_(m.bias)
    return nn.Sequential(*layers)


def _dense(x: Tensor, weight: Tensor, bias: Tensor | None) -> Tensor:
    """``x @ weight.T + bias`` on (..., in) -> (..., out), as nn.Linear, with a faster weight gradient.

    Autograd forms the weight gradient of ``addmm(b, x, w)`` as ``x.T @ g`` when ``w`` is row-major and as
    ``(g.T @ x).T`` when it is a transposed view. On tall-skinny products (R ≈ 10⁵ rows) MKL is ~10x faster
    with the narrow operand first ([7, R] @ [R, 80] vs [80, R] @ [R, 7], measured), so widening layers get
    a row-major copy of ``weight.T`` (a (in, out) copy, negligible) and narrowing layers the view.
    """
    w = weight.t().contiguous() if weight.shape[0] > weight.shape[1] else weight.t()
    flat = x.reshape(-1, x.shape[-1])
    out = torch.addmm(bias, flat, w) if bias is not None else flat @ w
    return out.view(*x.shape[:-1], w.shape[1])


def _run(seq: nn.Sequential, x: Tensor, start: int = 0, fast: bool = False) -> Tensor:
    """Apply ``seq[start:]`` (Linear / ReLU / Tanh modules) with :func:`_dense` for the Linear layers."""
    for mod in list(seq)[start:]:
        if isinstance(mod, nn.Linear):
            x = _dense(x, mod.weight, mod.bias)
        elif isinstance(mod, nn.Tanh):
            x = _tanh(x, fast)
        elif isinstance(mod, nn.ReLU):
            x = torch.relu(x)
        else:  # pragma: no cover - _mlp builds only these
            x = mod(x)
    return x


def _separable(parts: Sequence[Tensor], weight: Tensor, bias: Tensor | None, extra: Tensor | None = None) -> Tensor:
    """First dense layer of ``cat(broadcast(parts))`` without materialising the concatenated features.

    ``W·[a, b, c] + bias = W_a·a + W_b·b + W_c·c + bias``: each part (broadcastable to (B, N, *nodes, f_k),
    features in order) meets its column block of ``weight`` at its own small size; the broadcast sum is the
    only full-size tensor. ``extra`` (broadcastable too) is added as well.
    """
    terms, col = [], 0
    for part in parts:
        f = part.shape[-1]
        terms.append(_dense(part, weight[:, col : col + f], None))
        col += f
    if bias is not None:
        terms[0] = terms[0] + bias
    if extra is not None:
        terms.append(extra)
    # add the per-synapse terms first (small), then broadcast once against the per-example ones
    terms.sort(key=lambda t: t.numel())
    out = terms[0]
    for t in terms[1:]:
        out = out + t
    return out


class Learner(nn.Module):
    """Interface: ``forward(features (B, N, *nodes, F), state (B, *nodes, H) | None) -> (out, new_state)``.

    ``forward_parts(parts, state)`` computes the same from the feature blocks ``parts`` (each broadcastable
    to (B, N, *nodes, f_k), concatenated in order along the last dimension) without materialising them.
    Subclasses implement ``cell`` (and ``cell_parts`` where the blocks save work): they return ``(y, new_state)``
    whose ``y`` may be wider than the output (a GRU returns its whole carry); :meth:`head` cuts it to ``out_dim``.
    ``MPLP(compile=True)`` compiles the cells and cuts outside them: inside a compiled cell, the backward of
    that 5-of-7 slice mixed widths in one fused kernel, and inductor (torch 2.13) then ran an 8-long reduction
    in parallel inside a serial 7200-long loop: kernels 4-10× slower on two threads than on one (issue 15).
    """

    in_dim: int
    out_dim: int
    state_dim: int = 0
    fast: bool = False  # tanh through :class:`_SigmoidTanh` (same math to ~2e-7); MPLP(fast=...) sets it

    def init_state(self, shape: Sequence[int], like: Tensor) -> Tensor | None:
        return None

    def cell(self, features: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor | None]:
        raise NotImplementedError

    def cell_parts(self, parts: Sequence[Tensor], state: Tensor | None) -> tuple[Tensor, Tensor | None]:
        shape = torch.broadcast_shapes(*(p.shape[:-1] for p in parts))
        return self.cell(torch.cat([p.expand(*shape, p.shape[-1]) for p in parts], -1), state)

    def head(self, result: tuple[Tensor, Tensor | None]) -> tuple[Tensor, Tensor | None]:
        """``(y, new_state)`` of a cell -> ``(y[..., :out_dim], new_state)`` (no slice when already that wide)."""
        y, new_state = result
        return (y if y.shape[-1] == self.out_dim else y[..., : self.out_dim]), new_state

    def forward(self, features: Tensor, state: Tensor | None) -> tuple[Tensor, Tensor | None]:
        return self.head(self.cell(features, state))

    def forward_parts(self, parts: Sequence[Tensor], state: Tensor | None) -> tuple[Tensor, Tensor | None]:
        return self.head(self.cell_parts(parts, state))


class MLPLearner(Learner):
    """Stateless learner: MLP with hidden layers (80, 40), ReLU, tanh output (Sec. 3, Exp. 4.1.2)."""

    def __init__(self, in_dim: int, out_dim: int, hidden: Sequence[int] = (80, 40)) -> None:
        super().__init__()
        self.in_dim, self.out_dim = in_dim, out_dim
        self.net = _mlp(in_dim, out_dim, hidden, "relu", final_tanh=True)

    def cell(self, features: Tensor, state: Tensor | None) -> tuple[Tensor, None]:
        return _run(self.net, features, fast=self.fast), None

    def cell_parts(self, parts: Sequence[Tensor], state: Tensor | None) -> tuple[Tensor, None]:
        first = self.net[0]
        return _run(self.net, _separable(parts, first.weight, first.bias), start=1, fast=self.fast), None


class GRULearner(Learner):
    """Stateful learner (eqs. 10-12): GRU whose candidate is tanh(MLP_x(x) + MLP_c(c·r) + b_n).

    The outputs are the first ``out_dim`` carry entries. Gate biases start at −1 (NOTES). The inner MLPs
    use tanh as in the official code (the appendix says ReLU; ``mlp_activation`` picks).
    The new carry is averaged over the minibatch dimension N so that each node keeps one state.
    """

    def __init__(
        self, in_dim: int, out_dim: int, hidden: int, mlp: Sequence[int] = (80, 40), mlp_activation: str = "tanh"
    ) -> None:
        super().__init__()
        if out_dim > hidden:
            raise BadConfig(f"GRU learner hidden size {hidden} is smaller than its output size {out_dim}")
        self.in_dim, self.out_dim, self.state_dim = in_dim, out_dim, hidden
        self.gates_x = nn.Linear(in_dim, 2 * hidden)
        self.gates_c = nn.Linear(hidden, 2 * hidden, bias=False)
        nn.init.normal_(self.gates_x.weight, 0.0, 0.05)
        nn.init.normal_(self.gates_c.weight, 0.0, 0.05)
        nn.init.constant_(self.gates_x.bias, -1.0)
        self.mlp_x = _mlp(in_dim, hidden, mlp, mlp_activation, final_tanh=False)
        self.mlp_c = _mlp(hidden, hidden, mlp, mlp_activation, final_tanh=False)
        self.bias_n = nn.Parameter(torch.zeros(hidden))

    def init_state(self, shape: Sequence[int], like: Tensor) -> Tensor:
        return like.new_zeros(*shape, self.state_dim)

    def cell(self, features: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        return self.cell_parts([features], state)

    def cell_parts(self, parts: Sequence[Tensor], state: Tensor) -> tuple[Tensor, Tensor]:
        """(new carry (B, N, *nodes, H), its mean over N) from the feature blocks ``parts`` (same math as eqs. 10-12).

        The carry c is one per node (B, *nodes, H), so its gate term W_c·c is computed per node, not per
        (example, node); the input terms of the gates and of MLP_x's first layer are separable over the
        feature blocks (:func:`_separable`). Only MLP_c(c·r) and the layers after the first need the full
        (B, N, *nodes, ·) size. u and r come from their own row blocks of the gate weights rather than from a
        chunked (…, 2H) tensor: compiled, a kernel reading H-wide slices of 2H-wide rows could not merge its
        dimensions and hit the slow inductor loop of :class:`Learner` (eager: the same time).
        """
        c = state.unsqueeze(1)  # (B, 1, *nodes, H)
        h = self.state_dim
        w_x, b_x, w_c = self.gates_x.weight, self.gates_x.bias, self.gates_c.weight
        u = torch.sigmoid(_separable(parts, w_x[:h], b_x[:h], _dense(c, w_c[:h], None)))  # eq. 10
        r = torch.sigmoid(_separable(parts, w_x[h:], b_x[h:], _dense(c, w_c[h:], None)))  # eq. 11
        first = self.mlp_x[0]
        mx = _run(self.mlp_x, _separable(parts, first.weight, first.bias), start=1, fast=self.fast)  # eq. 12
        cand = _tanh(mx + _run(self.mlp_c, c * r, fast=self.fast) + self.bias_n, self.fast)
        new_c = cand + u * (c - cand)  # eq. 12: u·c + (1 − u)·cand
        return new_c, new_c.mean(1)


class Standardizer(nn.Module):
    """Per-feature standardisation with statistics accumulated while calibrating, frozen afterwards (Sec. 3)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.register_buffer("total", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("total_sq", torch.zeros(dim, dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.calibrating = False

    def forward(self, x: Tensor) -> Tensor:
        if self.calibrating:
            flat = x.detach().reshape(-1, x.shape[-1]).double()
            self.total += flat.sum(0)
            self.total_sq += flat.pow(2).sum(0)
            self.count += flat.shape[0]
        if self.count == 0:
            return x
        mean, std = self.moments(x.dtype)
        return (x - mean) / std

    def moments(self, dtype: torch.dtype) -> tuple[Tensor, Tensor]:
        """(mean, std) per feature, each (F,), from the statistics gathered so far."""
        mean = self.total / self.count
        std = (self.total_sq / self.count - mean.pow(2)).clamp_min(0).sqrt().clamp_min(1e-6)
        return mean.to(dtype), std.to(dtype)

    def forward_parts(self, parts: Sequence[Tensor]) -> list[Tensor]:
        """:meth:`forward` on ``cat(broadcast(parts))``, returned as standardised blocks (none materialised).

        While calibrating, a block broadcast over ``reps`` rows contributes ``reps`` times its own sums: the
        statistics are exactly those of the concatenated features.
        """
        if self.calibrating:
            rows = math.prod(torch.broadcast_shapes(*(p.shape[:-1] for p in parts)))
            sums, squares = [], []
            for part in parts:
                flat = part.detach().reshape(-1, part.shape[-1]).double()
                reps = rows // flat.shape[0]
                sums.append(flat.sum(0) * reps)
                squares.append(flat.pow(2).sum(0) * reps)
            self.total += torch.cat(sums)
            self.total_sq += torch.cat(squares)
            self.count += rows
        if self.count == 0:
            return list(parts)
        mean, std = self.moments(parts[0].dtype)
        out, col = [], 0
        for part in parts:
            f = part.shape[-1]
            out.append((part - mean[col : col + f]) / std[col : col + f])
            col += f
        return out


class OutputScaler(nn.Module):
    """Update = exp(log_scale) · 0.2·std(W_init) · (f_out − mean at calibration) (Sec. 3)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("out_total", torch.zeros((), dtype=torch.float64))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("w_std_total", torch.zeros((), dtype=torch.float64))
        self.register_buffer("w_count", torch.zeros((), dtype=torch.float64))
        self.log_scale = nn.Parameter(torch.zeros(()))  # meta-trained
        self.calibrating = False

    def forward(self, out: Tensor, weight: Tensor) -> Tensor:
        if self.calibrating:
            self.out_total += out.detach().double().sum()
            self.count += out.numel()
            self.w_std_total += weight.detach().double().std()
            self.w_count += 1
        mean = (self.out_total / self.count).to(out.dtype) if self.count > 0 else out.new_zeros(())
        if self.w_count > 0:
            w_std = (self.w_std_total / self.w_count).to(out.dtype)
        else:  # not calibrated: each task's own weight std, shape (B, 1, ...)
            w_std = weight.detach().flatten(1).std(1).view(-1, *([1] * (out.dim() - 1)))
        return self.log_scale.exp() * 0.2 * w_std * (out - mean)


# ------------------------------------------------------------------------------------------ protocol
class MPLP(nn.Module):
    """The learning protocol for a dense network ``sizes`` (see the module docstring).

    Args:
        sizes: layer widths, e.g. (1, 20, 20, 1).
        message_size: M, width of the backward messages.
        learner: "gru" (stateful) or "mlp" (stateless).
        hidden: GRU carry size (must be ≥ M + 1).
        sharing: "layer" — one f/g per weight matrix and per bias vector (the paper's default);
            "kind" — one weight learner and one bias learner for all layers, standardisers per layer;
            "all" — as "kind" and the standardisers/output scalers shared too (any depth then works).
        normalize: standardise learner inputs and scale f outputs (off only for hand-set rules).
        learners: optional hand-set learners dict {"loss", "act", "weight": [per layer], "bias": [per layer]}.
        fast: compute the learners' tanh as 2σ(2z) − 1 (:class:`_SigmoidTanh`, same math to ~2e-7); the
            plain path (``fast=False``) uses ``torch.tanh``.
        compile: run each weight learner's ``cell_parts`` through ``torch.compile`` (``engramlab.nn.fast.Compiled``,
            issue 15), its output cut to ``out_dim`` outside the compiled function; the loss, activation and bias
            learners stay eager. The same math, its elementwise chains fused. On this 2-core CPU the MPLP-MNIST
            outer step (144-50-10, GRU learners) ran 1.18× faster on one thread after 46 s of compilation and
            1.15× on two after 53 s (at B = 4, 1.19× after 50 s): worth it for runs of more than ~200-400 outer
            steps, so off by default. Compiling every learner's cell gained less (0.98-1.10× on two threads):
            inductor parallelises the short reductions of cells narrower than 16 lanes inside their serial loops.
            Cells compile anew per shape until torch marks the sizes dynamic; a failed compilation falls back to
            the eager cells (one warning); ``fast_paths(False)`` runs them eagerly.
        residual: **departure from paper 004** (issue 14, "a rule that starts as a learner"): every node adds
            its learned output, times a meta-trained gain that starts at 0, to the hand-set SGD rule
            (:func:`hand_set_sgd`): message channel 0 carries the back-propagated error, the weight/bias
            updates add ``−lr_l · (minibatch mean of m⁰_j·x_i)`` with a meta-trained per-layer ``lr_l``.
            At initialisation the rule *is* minibatch SGD with per-layer rates ``residual_lr``; meta-training
            learns the corrections (the learners see the full messages, channel 0 included).
        residual_lr: initial SGD rate(s) of the residual form, one float or one per layer.
        residual_derivative: the activation derivative the residual's activation node uses, as a function of
            the stored pre-activation z only (the node does not know the network's activation, as g does
            not): "sigmoid" σ'(z), "relu", "tanh" or "linear". On a step-activation network the sigmoid
            derivative acts as a surrogate gradient.
        learned: with ``residual``, False drops the learners altogether: the rule is SGD with meta-learned
            per-layer rates (the ablation that measures what the learned corrections add).
    """

    def __init__(
        self,
        sizes: Sequence[int],
        message_size: int = 8,
        learner: Literal["gru", "mlp"] = "gru",
        hidden: int = 15,
        sharing: Sharing = "layer",
        normalize: bool = True,
        mlp_activation: str = "tanh",
        learners: dict | None = None,
        fast: bool = True,
        residual: bool = False,
        residual_lr: float | Sequence[float] = 1.0,
        residual_derivative: str = "sigmoid",
        learned: bool = True,
        compile: bool = False,
    ) -> None:
        super().__init__()
        if len(sizes) < 2 or any(int(s) < 1 for s in sizes):
            raise BadConfig(f"sizes must list ≥ 2 positive widths, got {tuple(sizes)}")
        if message_size < 1:
            raise BadConfig(f"message_size must be ≥ 1, got {message_size}")
        if sharing not in ("layer", "kind", "all"):
            raise BadConfig(f"sharing must be 'layer', 'kind' or 'all', got {sharing!r}")
        self.sizes, self.message_size, self.sharing, self.normalize = tuple(sizes), message_size, sharing, normalize
        self.num_layers = len(sizes) - 1
        m = message_size

        def make(in_dim: int, out_dim: int) -> Learner:
            if learner == "gru":
                return GRULearner(in_dim, out_dim, hidden, mlp_activation=mlp_activation)
            if learner == "mlp":
                return MLPLearner(in_dim, out_dim)
            raise BadConfig(f"learner must be 'gru' or 'mlp', got {learner!r}")

        def per_layer(factory: Callable[[], nn.Module], share: bool) -> nn.ModuleList:
            if share:
                one = factory()
                return nn.ModuleList([one] * self.num_layers)
            return nn.ModuleList([factory() for _ in range(self.num_layers)])

        if learners is not None:
            self.loss_learner, self.act_learner = learners["loss"], learners["act"]
            self.w_learners, self.b_learners = nn.ModuleList(learners["weight"]), nn.ModuleList(learners["bias"])
        else:
            self.loss_learner = make(3, m)  # [loss_n, ŷ_k, y_k] -> message (eq. 6)
            self.act_learner = make(m + 1, m)  # [m_j, z_j] -> message
            shared = sharing != "layer"
            self.w_learners = per_layer(lambda: make(m + 2, m + 1), shared)  # [m_j, w_ij, x_i] -> (msg, Δw)
            self.b_learners = per_layer(lambda: make(m + 1, 1), shared)  # [m_j, b_j] -> Δb
        shared_norm = sharing == "all"
        self.loss_std, self.act_std = Standardizer(3), Standardizer(m + 1)
        self.w_std = per_layer(lambda: Standardizer(m + 2), shared_norm)
        self.b_std = per_layer(lambda: Standardizer(m + 1), shared_norm)
        self.w_scale = per_layer(OutputScaler, shared_norm)
        self.b_scale = per_layer(OutputScaler, shared_norm)
        for mod in self.modules():
            if isinstance(mod, Learner):
                mod.fast = fast
        # not ``self.compile``: ``nn.Module.compile`` is a method; _cells: weight learner id -> Compiled cell
        self.compile_cells, self._cells = compile, {}
        self.residual, self.learned, self._calibrating = residual, learned or not residual, False
        if residual:
            if residual_derivative not in _DERIVATIVES:
                raise BadConfig(f"residual_derivative must be one of {list(_DERIVATIVES)}, got {residual_derivative!r}")
            self.residual_derivative = residual_derivative
            lrs = [float(residual_lr)] * self.num_layers if isinstance(residual_lr, (int, float)) else residual_lr
            if len(lrs) != self.num_layers or min(lrs) <= 0:
                raise BadConfig(f"residual_lr needs one positive rate per layer ({self.num_layers}), got {residual_lr}")
            self.log_lr = nn.Parameter(torch.tensor([math.log(v) for v in lrs]))  # meta-trained per-layer SGD rate
            # ReZero-style gains on every learned output, 0 at the start: the rule starts as SGD exactly
            self.gain_loss = nn.Parameter(torch.zeros(()))
            self.gain_act = nn.Parameter(torch.zeros(()))
            self.gain_wmsg = nn.Parameter(torch.zeros(()))
            self.gain_w = nn.Parameter(torch.zeros(self.num_layers))
            self.gain_b = nn.Parameter(torch.zeros(self.num_layers))

    def _gain(self, g: Tensor) -> Tensor:
        """A residual gain; 1 while calibrating so the statistics see the learned outputs switched on."""
        return g.new_ones(g.shape) if self._calibrating else g

    # -------------------------------------------------------------------------------- calibration
    @contextmanager
    def calibrating(self):
        """Inside this context standardiser and output-mean statistics accumulate; outside they are frozen."""
        mods = [mod for mod in self.modules() if isinstance(mod, (Standardizer, OutputScaler))]
        for mod in mods:
            mod.calibrating = True
        self._calibrating = True
        try:
            yield
        finally:
            self._calibrating = False
            for mod in mods:
                mod.calibrating = False

    def _std(self, mod: Standardizer, x: Tensor) -> Tensor:
        return mod(x) if self.normalize else x

    # ------------------------------------------------------------------------------------- state
    def check_shape(self, sizes: Sequence[int]) -> None:
        """Raise BadInput if the rule cannot run a network of widths ``sizes`` under its sharing."""
        if len(sizes) < 2:
            raise BadInput(f"a task network needs ≥ 2 widths, got {tuple(sizes)}")
        if self.sharing != "all" and len(sizes) - 1 != self.num_layers:
            raise BadInput(
                f"this MPLP rule (sharing={self.sharing!r}) was built for {self.num_layers} layers "
                f"{self.sizes}; got {len(sizes) - 1} layers {tuple(sizes)} (use sharing='all' to transfer depth)"
            )

    def init_state(self, params: Sequence[Tensor]) -> dict[str, list[Tensor | None]]:
        """Zero learner states: per weight (B, n_in, n_out, H), bias/activation/loss units (B, n, H)."""
        sizes = [params[0].shape[1]] + [w.shape[2] for w in params[0::2]]
        self.check_shape(sizes)
        b, like = params[0].shape[0], params[0]
        layers = range(len(sizes) - 1)
        return {
            "loss": [self.loss_learner.init_state((b, sizes[-1]), like)],
            "act": [self.act_learner.init_state((b, n), like) for n in sizes[1:-1]],
            "weight": [self._wl(i).init_state((b, sizes[i], sizes[i + 1]), like) for i in layers],
            "bias": [self._bl(i).init_state((b, sizes[i + 1]), like) for i in layers],
        }

    def _wl(self, i: int) -> Learner:
        return self.w_learners[min(i, len(self.w_learners) - 1)]

    def _bl(self, i: int) -> Learner:
        return self.b_learners[min(i, len(self.b_learners) - 1)]

    def _norm(self, mods: nn.ModuleList, i: int) -> nn.Module:
        return mods[min(i, len(mods) - 1)]

    def _weight_cell(self, learner: Learner) -> Callable[..., tuple[Tensor, Tensor | None]]:
        """``learner.forward_parts``; with ``compile`` set, ``learner.cell_parts`` through ``torch.compile``, its
        output cut to ``out_dim`` outside it (see :class:`Learner`). Only the weight learners are compiled: the
        others run per node, not per synapse (a few hundred rows), where a compiled call's fixed cost exceeds
        what fusion saves (every cell compiled: 0.98-1.10× the plain MPLP-MNIST quick step, against
        1.15-1.19× for the weight learners alone)."""
        if not self.compile_cells:
            return learner.forward_parts
        if id(learner) not in self._cells:
            self._cells[id(learner)] = Compiled(learner.cell_parts, "MPLP weight learner")
        cell = self._cells[id(learner)]
        return lambda *args: learner.head(cell(*args))

    # -------------------------------------------------------------------------------------- step
    def step(
        self, params: list[Tensor], state: dict, x: Tensor, y: Tensor, activation: str, loss: str
    ) -> tuple[list[Tensor], dict, Tensor]:
        """One learning step on a minibatch: forward, learned backward messages, learned updates (eqs. 5-9).

        Args:
            params: [W1, b1, ...] with W (B, n_in, n_out), b (B, n_out).
            state: from :meth:`init_state` (or the previous step).
            x: (B, N, n_in) inputs; y: (B, N, n_out) targets (one-hot for "ce").
        Returns: (new params, new state, per-example losses (B, N) before the update).
        """
        if x.dim() != 3 or x.shape[0] != params[0].shape[0] or x.shape[-1] != params[0].shape[1]:
            raise BadInput(f"inputs must be (B={params[0].shape[0]}, N, {params[0].shape[1]}), got {tuple(x.shape)}")
        out, inputs, pre = net_forward(params, x, activation)
        if y.shape != out.shape:
            raise BadInput(f"targets must have shape {tuple(out.shape)}, got {tuple(y.shape)}")
        losses = per_example_loss(out, y, loss)
        num_layers = len(params) // 2
        n_out = out.shape[-1]
        m = self.message_size
        pred = out.softmax(-1) if loss == "ce" else out
        res, learned = self.residual, self.learned
        new_state = {
            "loss": list(state["loss"]),
            "act": list(state["act"]),
            "weight": list(state["weight"]),
            "bias": list(state["bias"]),
        }
        msg = None
        if learned:
            # loss node (eq. 6): [loss_n, ŷ_k, y_k] per output unit -> message (B, N, n_out, M)
            feats = torch.stack([losses.unsqueeze(-1).expand(-1, -1, n_out), pred, y.to(out.dtype)], dim=-1)
            msg, new_state["loss"][0] = self.loss_learner(self._std(self.loss_std, feats), state["loss"][0])
        if res:  # the SGD rule's error dL_n/dŷ_k in channel 0, plus the gated learned message
            err = pred - y.to(out.dtype) if loss == "ce" else 2.0 * (out - y) / n_out
            msg = _residual(err, msg, self._gain(self.gain_loss), m)
        new_params = list(params)
        for i in reversed(range(num_layers)):
            w, b, h = params[2 * i], params[2 * i + 1], inputs[i]
            bsz, nb, n_in = h.shape
            n_o = w.shape[2]
            if learned:
                # weight nodes: [m_j, w_ij, x_i], broadcast to (B, N, n_in, n_out, M+2) but never materialised:
                # the blocks are per (example, output unit), per synapse and per (example, input unit)
                parts = [msg.unsqueeze(2), w.unsqueeze(1).unsqueeze(-1), h.unsqueeze(-1).unsqueeze(-1)]
                if self.normalize:
                    parts = self._norm(self.w_std, i).forward_parts(parts)
                wout, new_state["weight"][i] = self._weight_cell(self._wl(i))(parts, state["weight"][i])
                dw = wout[..., m].mean(1)  # eq. 8: average over the minibatch
                bf = torch.cat([msg, b.unsqueeze(1).unsqueeze(-1).expand(bsz, nb, n_o, 1)], dim=-1)
                bf = self._std(self._norm(self.b_std, i), bf)
                bout, new_state["bias"][i] = self._bl(i)(bf, state["bias"][i])
                db = bout[..., 0].mean(1)
                if self.normalize:
                    dw = self._norm(self.w_scale, i)(dw, w)
                    db = self._norm(self.b_scale, i)(db, w)
            if res:  # SGD's update on the mean loss, −lr·mean_n m⁰_j·x_i, plus the gated learned update
                lr = self.log_lr[min(i, self.num_layers - 1)].exp()
                m0 = msg[..., 0]  # (B, N, n_out)
                sgd_w = torch.bmm(h.transpose(1, 2), m0).mul_(-lr / nb)
                sgd_b = m0.mean(1).mul_(-lr)
                if learned:
                    k = min(i, self.num_layers - 1)
                    dw = sgd_w + self._gain(self.gain_w[k]) * dw
                    db = sgd_b + self._gain(self.gain_b[k]) * db
                else:
                    dw, db = sgd_w, sgd_b
            new_params[2 * i], new_params[2 * i + 1] = w + dw, b + db
            if i > 0:
                back = wout[..., :m].mean(3) if learned else None  # eq. 9: fan-out average -> (B, N, n_in, M)
                if res:  # channel 0: the back-propagated error Σ_j m⁰_j·w_ij (= mean_j of K·m⁰_j·w_ij)
                    back = _residual(torch.bmm(msg[..., 0], w.transpose(1, 2)), back, self._gain(self.gain_wmsg), m)
                msg = back
                if learned:
                    af = torch.cat([msg, pre[i - 1].unsqueeze(-1)], dim=-1)
                    af = self._std(self.act_std, af)
                    msg, new_state["act"][i - 1] = self.act_learner(af, state["act"][i - 1])
                if res:  # channel 0: m⁰·σ'(z) with the rule's own derivative of the stored pre-activation
                    deriv = _DERIVATIVES[self.residual_derivative](pre[i - 1])
                    msg = _residual(back[..., 0] * deriv, msg if learned else None, self._gain(self.gain_act), m)
            if not torch.isfinite(msg).all() or not (torch.isfinite(dw).all() and torch.isfinite(db).all()):
                raise NumericalError(f"MPLP produced non-finite messages or updates at layer {i + 1}")
        return new_params, new_state, losses


def _residual(sgd: Tensor, learned: Tensor | None, gain: Tensor, m: int) -> Tensor:
    """Message of the residual form: the SGD signal ``sgd`` (…) in channel 0 of M, plus gain·learned (…, M)."""
    base = F.pad(sgd.unsqueeze(-1), (0, m - 1))
    return base if learned is None else base + gain * learned


# ------------------------------------------------------------------------------- hand-set SGD rule
class _Fn(Learner):
    def __init__(self, fn: Callable[[Tensor], Tensor], in_dim: int, out_dim: int) -> None:
        super().__init__()
        self.fn, self.in_dim, self.out_dim = fn, in_dim, out_dim

    def cell(self, features: Tensor, state: Tensor | None) -> tuple[Tensor, None]:
        return self.fn(features), None


def hand_set_sgd(sizes: Sequence[int], lr: float, activation: str = "relu", loss: str = "mse") -> MPLP:
    """A fixed, hand-written MPLP rule that is exactly minibatch SGD (M = 1).

    Messages are back-propagated gradients: the loss node sends ∂L_n/∂ŷ_k, a weight node sends
    K·m_j·w_ij (so the fan-out average of eq. 9 is the backprop sum), an activation node m·σ'(z);
    f_W = −lr·m_j·x_i and f_b = −lr·m_j, averaged over the batch (eq. 8) = SGD on the mean loss.
    """
    deriv = {
        "relu": lambda z: (z > 0).to(z.dtype),
        "linear": torch.ones_like,
        "sigmoid": lambda z: torch.sigmoid(z) * (1 - torch.sigmoid(z)),
        "tanh": lambda z: 1 - torch.tanh(z) ** 2,
    }
    if activation not in deriv:
        raise BadConfig(f"hand-set SGD has no derivative for activation '{activation}'")
    n_out = sizes[-1]
    if loss == "mse":
        loss_fn = lambda f: 2.0 * (f[..., 1:2] - f[..., 2:3]) / n_out  # noqa: E731
    else:
        loss_fn = lambda f: f[..., 1:2] - f[..., 2:3]  # noqa: E731  softmax − one-hot
    act = _Fn(lambda f: f[..., :1] * deriv[activation](f[..., 1:2]), 2, 1)
    weights, biases = [], []
    for n_o in sizes[1:]:
        k = float(n_o)
        weights.append(
            _Fn(lambda f, k=k: torch.cat([k * f[..., :1] * f[..., 1:2], -lr * f[..., :1] * f[..., 2:3]], -1), 3, 2)
        )
        biases.append(_Fn(lambda f: -lr * f[..., :1], 2, 1))
    learners = {"loss": _Fn(loss_fn, 3, 1), "act": act, "weight": weights, "bias": biases}
    return MPLP(sizes, message_size=1, normalize=False, learners=learners)
