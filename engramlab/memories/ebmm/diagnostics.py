"""Checks that a written EBMM behaves as a memory (issue 12, the ladder's diagnostics).

Each function takes a memory, one batch of episodes and optionally its written state (``diagnose``
writes the batch once for all of them) and returns plain floats, so the ladder
benchmark can report them per rung and the tests can assert them on a trained small model:

- ``energy_order``: after a write, E(stored) < E(query) < E(random string) — the energy ranks patterns;
- ``fixed_point_drift``: a read started at a stored pattern stays there (Hamming after K steps);
- ``stationarity``: ‖∇ₓE‖ and the *projected* gradient at the stored patterns vs at the queries; with
  the read projected onto the data box (App. A.1), a corner x is a fixed point iff −∇ₓE points out of
  the box in every coordinate, so the projected gradient (the part that moves x inside) is the
  quantity the write must make small, and it is reported beside the plain norm;
- ``write_specificity``: how much of the written change θ − θ̄ differs between episodes (1 = all of it,
  0 = every episode writes the same thing, e.g. only the mean pattern);
- ``swap_error``: the read error when the queries are read with another episode's written weights
  (close to the query's own error or worse when the memory is used; equal to the unswapped error when
  the read ignores the memory).

Example::

    batch = source.batch(0)
    energy_order(memory, batch)          # {"stored_below_query": 1.0, "query_below_random": 0.98, ...}
"""

from __future__ import annotations

import torch
from torch import Tensor

from engramlab.episodes.batch import EpisodeBatch
from engramlab.errors import BadInput
from engramlab.memories.ebmm.memory import EBMM, EBMMState


def _wrong_bits(read: Tensor, target: Tensor, mid: float) -> float:
    return float(((read > mid) != (target > mid)).float().mean())


def _state(memory: EBMM, batch: EpisodeBatch, state: EBMMState | None) -> EBMMState:
    """The given written state, else the batch written now (callers put the memory in eval mode first)."""
    if state is not None:
        return state
    with torch.no_grad():
        return memory.write(batch.patterns)


def energy_order(memory: EBMM, batch: EpisodeBatch, seed: int = 0, state: EBMMState | None = None) -> dict[str, float]:
    """Fractions of queries n with E(stored_n) < E(query_n), and E(query_n) < E(random_n), after a write
    (random_n: a uniform pattern in the data range, binarised for ±1 strings), plus the mean energies."""
    memory.eval()
    state = _state(memory, batch, state)
    low, high = memory.value_range
    n = batch.queries.shape[1]
    g = torch.Generator().manual_seed(seed)
    random = low + (high - low) * torch.rand(batch.queries.shape, generator=g).to(batch.queries)
    if low < 0:
        random = torch.where(random > 0, high, low)
    with torch.no_grad():
        e_stored = memory.energy(batch.targets[:, :n], state)
        e_query = memory.energy(batch.queries, state)
        e_random = memory.energy(random, state)
    memory.train()
    return {
        "stored_below_query": float((e_stored < e_query).float().mean()),
        "query_below_random": float((e_query < e_random).float().mean()),
        "energy_stored": float(e_stored.mean()),
        "energy_query": float(e_query.mean()),
        "energy_random": float(e_random.mean()),
    }


def fixed_point_drift(memory: EBMM, batch: EpisodeBatch, state: EBMMState | None = None) -> dict[str, float]:
    """Hamming error (and squared error) of the read started at the clean stored patterns: 0 when every
    stored pattern is a fixed point of the K read steps."""
    memory.eval()
    state = _state(memory, batch, state)
    with torch.no_grad():
        read = memory.read(batch.targets, state)
    memory.train()
    mid = sum(memory.value_range) / 2
    return {
        "drift_hamming": _wrong_bits(read, batch.targets, mid),
        "drift_sq": float((read - batch.targets).pow(2).flatten(2).sum(-1).mean()),
    }


def _grad(memory: EBMM, x: Tensor, state: EBMMState) -> Tensor:
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(memory.energy(x, state).sum(), x)
    return grad


def projected_gradient(grad: Tensor, x: Tensor, low: float, high: float) -> Tensor:
    """The part of −∇ₓE that a projected step would follow at x: coordinates at a bound whose descent
    direction points out of the box [low, high] are zeroed (the box KKT residual)."""
    step = -grad
    blocked = ((x >= high) & (step > 0)) | ((x <= low) & (step < 0))
    return torch.where(blocked, torch.zeros_like(step), step)


def stationarity(memory: EBMM, batch: EpisodeBatch, state: EBMMState | None = None) -> dict[str, float]:
    """Mean per-pattern ‖∇ₓE‖ and ‖projected ∇ₓE‖ at the stored patterns and at the queries."""
    memory.eval()
    state = _state(memory, batch, state)
    low, high = memory.value_range
    n = batch.queries.shape[1]
    out = {}
    for name, x in (("stored", batch.targets[:, :n]), ("query", batch.queries)):
        grad = _grad(memory, x, state)
        out[f"grad_norm_{name}"] = float(grad.flatten(2).norm(dim=-1).mean())
        projected = projected_gradient(grad, x, low, high)
        out[f"projected_grad_norm_{name}"] = float(projected.flatten(2).norm(dim=-1).mean())
    memory.train()
    return out


def write_specificity(memory: EBMM, batch: EpisodeBatch, state: EBMMState | None = None) -> dict[str, float]:
    """Share of the written change that is episode-specific: mean_b ‖Δ_b − mean_b' Δ_b'‖ / ‖Δ_b‖ with
    Δ_b = θ_b − θ̄ over all writable tensors (needs ≥ 2 episodes), and the mean ‖Δ_b‖."""
    if batch.patterns.shape[0] < 2:
        raise BadInput(f"write_specificity needs a batch of at least 2 episodes, got {batch.patterns.shape[0]}")
    memory.eval()
    state = _state(memory, batch, state)
    anchor = memory.energy_net.initial_fast(batch.patterns.shape[0])
    delta = torch.cat([(state.fast[n] - anchor[n]).detach().flatten(1) for n in state.fast], 1)  # (B, P)
    specific = delta - delta.mean(0, keepdim=True)
    norm = delta.norm(dim=1)
    memory.train()
    return {
        "write_specificity": float((specific.norm(dim=1) / norm.clamp_min(1e-12)).mean()),
        "write_norm": float(norm.mean()),
    }


def swapped_state(state: EBMMState, shift: int = 1) -> EBMMState:
    """Episode b gets the written weights of episode b − shift (the batch rolled by ``shift``)."""
    return EBMMState(fast={n: t.roll(shift, 0) for n, t in state.fast.items()})


def swap_error(memory: EBMM, batch: EpisodeBatch, state: EBMMState | None = None) -> dict[str, float]:
    """Hamming error of reads with the episode's own written weights and with those of the next
    episode in the batch (rolled by one), for the same queries."""
    memory.eval()
    state = _state(memory, batch, state)
    swapped = swapped_state(state)
    with torch.no_grad():
        own = memory.read(batch.queries, state)
        other = memory.read(batch.queries, swapped)
    memory.train()
    mid = sum(memory.value_range) / 2
    return {"own_hamming": _wrong_bits(own, batch.targets, mid), "swap_hamming": _wrong_bits(other, batch.targets, mid)}


def diagnose(memory: EBMM, batch: EpisodeBatch) -> dict[str, float]:
    """All of the above on one batch (written once), as one flat dict."""
    memory.eval()
    state = _state(memory, batch, None)
    return {
        **energy_order(memory, batch, state=state),
        **fixed_point_drift(memory, batch, state),
        **stationarity(memory, batch, state),
        **write_specificity(memory, batch, state),
        **swap_error(memory, batch, state),
    }
