"""Issue 12's checks that EBMM works as a memory: the meta-gradient against finite differences, and the
diagnostics (energy order, fixed points, projected gradient, episode-specific writes, swapped memories)
on a trained small model and on hand-built cases where the answer is known."""

from pathlib import Path

import pytest
import torch

from engramlab.episodes.batch import EpisodeBatch
from engramlab.memories.base import build_memory
from engramlab.memories.ebmm import diagnostics as diag

TINY = dict(hidden_size=10, hops=2, write_steps=2, read_steps=2, write_lr=0.3, read_gamma=0.2, alpha=0.5, beta=0.3)


def test_meta_gradient_matches_finite_differences_in_float64(gen):
    """d(loss)/d(every meta-parameter) through the second-order write and the read, along a random
    direction, against a central difference (float64; patterns inside the box so the projection is
    inactive and the loss is smooth)."""
    torch.manual_seed(0)
    mem = build_memory("ebmm-strings", pattern_shape=(8,), dynamic_size=3, **TINY).double()
    x = (torch.randint(0, 2, (2, 3, 8), generator=gen).double() * 2 - 1) * 0.5
    q = x * (1 - 0.6 * (torch.rand(x.shape, generator=gen, dtype=torch.float64) < 0.25))
    batch = EpisodeBatch(patterns=x, queries=q, targets=x)
    params = [p for p in mem.parameters() if p.requires_grad]
    loss, _ = mem.loss(batch)
    grads = torch.autograd.grad(loss, params, allow_unused=True)  # the energy's output bias cancels in ∇ₓE
    grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads)]
    direction = [torch.randn(p.shape, generator=gen, dtype=torch.float64) for p in params]
    analytic = sum((g * d).sum() for g, d in zip(grads, direction))
    eps = 1e-5

    def shifted(sign):
        with torch.no_grad():
            for p, d in zip(params, direction):
                p.add_(sign * eps * d)
        value = mem.loss(batch)[0].detach()
        with torch.no_grad():
            for p, d in zip(params, direction):
                p.sub_(sign * eps * d)
        return value

    numeric = (shifted(1) - shifted(-1)) / (2 * eps)
    assert abs(float(analytic) - float(numeric)) < 1e-6 * max(1.0, abs(float(numeric)))


def test_projected_gradient_zeroes_only_components_pushing_out_of_the_box():
    x = torch.tensor([[[1.0, -1.0, 0.2, 1.0]]])
    grad = torch.tensor([[[-2.0, 3.0, 1.0, 0.5]]])  # −grad: out, out, in, in
    out = diag.projected_gradient(grad, x, -1.0, 1.0)
    assert out.tolist() == [[[0.0, 0.0, -1.0, -0.5]]]


def test_write_specificity_is_zero_when_every_episode_writes_the_same_patterns(gen):
    mem = build_memory("ebmm-strings", pattern_shape=(16,), hidden_size=32, write_lr=0.1)
    one = torch.randint(0, 2, (1, 3, 16), generator=gen).float() * 2 - 1
    same = EpisodeBatch(patterns=one.expand(4, 3, 16), queries=one.expand(4, 3, 16), targets=one.expand(4, 3, 16))
    assert diag.write_specificity(mem, same)["write_specificity"] < 1e-5
    different = torch.randint(0, 2, (4, 3, 16), generator=gen).float() * 2 - 1
    batch = EpisodeBatch(patterns=different, queries=different, targets=different)
    assert diag.write_specificity(mem, batch)["write_specificity"] > 0.3


# -- on a trained model ---------------------------------------------------------------------------------
# tests/data/ebmm_strings_ladder_T{1,8}.safetensors: the ebmm-ladder cpu preset's best states at T = 1 and T = 8
# (128-bit strings, hidden 128, 8127 writable floats; validation Hamming 0.0001 and 0.0004), trained with
# `engram bench ebmm-ladder --preset cpu` (run folders results/ebmm-ladder/cpu-work/T1/best and T8/best).
DATA = Path(__file__).parent.parent / "data"


@pytest.fixture(scope="module", params=[1, 8], ids=["T1", "T8"])
def trained(request):
    from safetensors.torch import load_file

    from engramlab.evaluation.suites.ebmm_ladder import CPU_EBMM, source

    T = request.param
    memory = build_memory("ebmm-strings", (128,), **CPU_EBMM)
    memory.load_state_dict(load_file(DATA / f"ebmm_strings_ladder_T{T}.safetensors"))
    return memory, source(T, 16, "test", 0, 16).batch(0)


def test_trained_memory_reads_better_than_the_query(trained):
    memory, batch = trained
    own = diag.swap_error(memory, batch)["own_hamming"]
    query = float(((batch.queries > 0) != (batch.targets > 0)).float().mean())
    assert own < 0.02 < query


def test_trained_energy_orders_stored_below_queries_below_random_strings(trained):
    order = diag.energy_order(*trained)
    assert order["stored_below_query"] >= 0.95 and order["query_below_random"] >= 0.95


def test_trained_read_started_at_a_stored_pattern_stays_there(trained):
    assert diag.fixed_point_drift(*trained)["drift_hamming"] <= 0.001


def test_trained_projected_gradient_is_small_at_stored_patterns(trained):
    s = diag.stationarity(*trained)
    assert s["projected_grad_norm_stored"] < 0.1 * s["projected_grad_norm_query"]


def test_trained_write_is_episode_specific_and_reads_need_their_own_memory(trained):
    memory, batch = trained
    assert diag.write_specificity(memory, batch)["write_specificity"] > 0.5
    swap = diag.swap_error(memory, batch)
    assert swap["swap_hamming"] > 0.1 > swap["own_hamming"]


@pytest.mark.parametrize("trained", [1], indirect=True)
def test_memory_use_tells_a_used_memory_from_an_ignored_one(trained):
    from engramlab.evaluation.suites.ebmm_common import evaluate, memory_use

    memory, batch = trained
    used = memory_use(memory, [batch], torch.device("cpu"))
    assert used["swap_gap"] - used["swap_gap_ci"] > 10  # another episode's weights read the wrong string
    assert used["unwritten_sq_error"] > 10
    assert used["own_sq_error"] == pytest.approx(evaluate(memory, [batch], torch.device("cpu"))["sq_error"])
    ignored = build_memory("ebmm-strings", (128,), hidden_size=128, write_lr=1e-12, learn_write_lr=False)
    none = memory_use(ignored, [batch], torch.device("cpu"))
    assert abs(none["swap_gap"]) < 1e-4 and none["swap_gap_ci"] < 1e-4  # a write that moves nothing
