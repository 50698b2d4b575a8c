"""The memory-swap test (issue 13): gap > 0 for a memory that is used, exactly 0 for one that is not."""

from __future__ import annotations

import pytest
import torch

from engramlab.errors import BadInput
from engramlab.evaluation.swap import frame_elbo, swap_gap, swap_test
from engramlab.memories.base import build_memory


def _episodes(b: int = 6, t: int = 8, seed: int = 0) -> torch.Tensor:
    """Each episode: one random binary prototype with 5% of its pixels flipped per frame, so the frames of an
    episode share structure and episodes differ."""
    g = torch.Generator().manual_seed(seed)
    proto = (torch.rand(b, 1, 1, 12, 12, generator=g) < 0.5).float()
    flips = (torch.rand(b, t, 1, 12, 12, generator=g) < 0.05).float()
    return (proto - flips).abs()


VBM = dict(code=8, rows=2, clusters=2, iters=3, width=8, likelihood="bernoulli")
KPP = dict(encoder_width=8, latent=8, memory_size=8, window=4, writer_width=8, dense_width=16, decoder_width=4,
           prior_width=4, read_steps=1, encoder_norm="group")  # fmt: skip
CASES = [
    ("vbm-gauss", VBM), ("vbm-cat", VBM), ("vbm-shifted", VBM), ("vbm-mixture", VBM), ("vbm-tree", VBM),
    ("vbm-dkm", VBM), ("vbm-ns", VBM), ("vbm-vae", VBM), ("kanerva++", KPP), ("kanerva++-dense", KPP),
    ("dkm", dict(encoder_width=8, code_size=8, memory_slots=4, decoder_width=4, encoder_norm="group")),
    ("kpp-vae", dict(encoder_width=8, latent=8, decoder_width=4, encoder_norm="group")),
]  # fmt: skip


@pytest.mark.parametrize("name,fields", CASES, ids=[c[0] for c in CASES])
def test_swap_runs_and_same_samples(name, fields):
    torch.manual_seed(0)
    model = build_memory(name, (1, 12, 12), **fields).eval()  # eval: spectral norm's power iteration is fixed
    x = _episodes()
    out = swap_test(model, x, seed=3)
    assert set(out) == {"elbo_own", "elbo_swap", "swap_gap"}
    assert all(v.shape == (6,) and torch.isfinite(v).all() for v in out.values())
    # same seed, same frames, own memory -> the same number again (the samples really are fixed)
    with torch.no_grad():
        torch.manual_seed(3)
        again = frame_elbo(model, x, x)
    torch.testing.assert_close(again, out["elbo_own"])


@pytest.mark.parametrize("name,fields", [("vbm-vae", VBM), CASES[-1]], ids=["vbm-vae", "kpp-vae"])
def test_memoryless_model_has_zero_gap(name, fields):
    torch.manual_seed(0)
    model = build_memory(name, (1, 12, 12), **fields)
    out = swap_gap(model, [_episodes(seed=1), _episodes(seed=2)], seed=0)
    assert out["swap_gap"] == 0.0 and out["swap_gap_ci"] == 0.0


def test_used_memory_has_positive_gap():
    """A VB-written Gaussian memory fits the codes of its own episode: each frame's code is explained far better
    by the memory written from its own (prototype-sharing) episode than by another episode's memory."""
    torch.manual_seed(0)
    model = build_memory("vbm-gauss", (1, 12, 12), **{**VBM, "noise_var": 0.01})  # σ² small: codes must fit
    out = swap_gap(model, [_episodes(seed=1), _episodes(seed=2)], seed=0)
    assert out["swap_gap"] - out["swap_gap_ci"] > 5.0, out


@pytest.mark.parametrize("name", ["vbm-gauss", "vbm-cat"])
def test_readdressing_does_not_lower_the_own_elbo(name):
    """Scoring frames with the optimal q(y) given the written q(M) is one more coordinate-ascent step: own-memory
    ELBO via write_from=x >= the write's own ELBO (same samples)."""
    torch.manual_seed(0)
    model = build_memory(name, (1, 12, 12), **VBM).eval()
    x = _episodes()
    with torch.no_grad():
        torch.manual_seed(5)
        write = model.elbo_terms(x)["elbo_per_frame"]
        torch.manual_seed(5)
        own = model.elbo_terms(x, write_from=x)["elbo_per_frame"]
    assert (own >= write - 1e-4).all()


def test_swap_rejects_bad_shift_and_single_episode():
    model = build_memory("vbm-vae", (1, 12, 12), **VBM)
    with pytest.raises(BadInput):
        swap_test(model, _episodes(b=1))
    with pytest.raises(BadInput):
        swap_test(model, _episodes(b=4), shift=4)


def test_single_episode_batches_are_pooled_in_pairs():
    """Batches of one episode (B = 1, long episodes) are swap-tested in consecutive pairs: the same numbers as
    the two-episode batches they make, and a last lone episode is left out."""
    torch.manual_seed(0)
    model = build_memory("vbm-gauss", (1, 12, 12), **{**VBM, "noise_var": 0.01})
    x = _episodes(b=4, seed=1)
    pairs = swap_gap(model, [x[:2], x[2:]], seed=0)
    singles = swap_gap(model, [x[i : i + 1] for i in range(4)] + [_episodes(b=1, seed=9)], seed=0)
    assert singles["episodes"] == pairs["episodes"] == 4
    assert singles["swap_gap"] == pytest.approx(pairs["swap_gap"]) and singles["swap_gap"] > 1.0
    with pytest.raises(BadInput, match="two episodes"):
        swap_gap(model, [x[:1]])
