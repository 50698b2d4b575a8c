"""Property-based test (Hypothesis) of the Memory protocol for every registered memory.

On random in-range episodes (B, T, N, values: uniform, binary, constant, all patterns equal) each
memory, built tiny, writes a state, reads (B, N, *pattern) finite reconstructions, generates
(B, n, *pattern) finite samples when generative, and reports a positive ``memory_floats``.
On the degenerate episodes (every value equal, or every pattern equal) a memory may instead raise
NumericalError, the clear error for a non-finite energy or gradient, but never return NaN/Inf.
"""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from engramlab.errors import NumericalError
from engramlab.memories import build_memory, memory_class, memory_names

DKM = dict(encoder_width=8, encoder_norm="group", code_size=8, memory_slots=6, decoder_width=8, read_steps=2)
KPP = dict(
    encoder_width=8, encoder_norm="group", latent=8, memory_size=8, window=4, writer_width=16,
    dense_width=32, decoder_width=8, prior_width=8, read_steps=2,
)  # fmt: skip
VBM = dict(code=8, rows=2, clusters=2, groups=2, iters=3, width=8)
EBMM = dict(hidden_size=8, write_steps=1, read_steps=2, write_lr=0.05, read_gamma=0.5)
EBMM_IMAGE = dict(EBMM, channels=4, dynamic_size=4)
IMAGE = (1, 8, 8)

#: name -> (pattern shape, config fields, smallest T and N); every registered memory must be listed.
#: The TSM encoders of the Kanerva family shift features across frames, so they need T, N >= 2.
TINY = {
    "dkm": (IMAGE, DKM, 2),
    "kanerva-machine": (IMAGE, DKM, 2),
    "ebmm-strings": ((16,), EBMM, 1),
    "ebmm-fc": (IMAGE, EBMM_IMAGE, 1),
    "ebmm-conv": (IMAGE, EBMM_IMAGE, 1),
    "ebmm-imagenet": ((3, 8, 8), EBMM_IMAGE, 1),
    "hopfield-hebbian": ((16,), dict(steps=2), 1),
    "hopfield-pinv": ((16,), dict(steps=2), 1),
    "hopfield-storkey": ((16,), dict(steps=2), 1),
    "kanerva++": (IMAGE, KPP, 2),
    "kanerva++-dense": (IMAGE, KPP, 2),
    "kpp-vae": (IMAGE, dict(encoder_width=8, encoder_norm="group", latent=8), 2),
    "modern-hopfield": ((8,), {}, 1),
    "modern-hopfield-learned": (IMAGE, dict(key_dim=8), 1),
    **{name: (IMAGE, VBM, VBM["rows"]) for name in ("vbm-cat", "vbm-gauss", "vbm-mixture", "vbm-shifted", "vbm-tree")},
    **{name: (IMAGE, VBM, 1) for name in ("vbm-dkm", "vbm-ns", "vbm-vae")},
}
#: Baselines that store nothing per episode (a VAE): memory_floats is 0 by definition.
NO_MEMORY = {"kpp-vae", "vbm-vae"}
#: Episodes on which every value, or every pattern, is the same.
DEGENERATE = {"all low", "all high", "repeated"}
#: Heavier to run (gradient writes through conv nets): fewer examples.
HEAVY = {"ebmm-conv", "ebmm-imagenet", "ebmm-fc", "kanerva++-dense"}

NAMES = [n for n in memory_names() if memory_class(n).__module__.startswith("engramlab.")]


def test_every_registered_memory_has_a_tiny_config():
    assert sorted(NAMES) == sorted(TINY)


_BUILT: dict[str, torch.nn.Module] = {}


def tiny(name):
    if name not in _BUILT:
        shape, fields, _ = TINY[name]
        torch.manual_seed(0)
        _BUILT[name] = build_memory(name, shape, **fields).eval()
    return _BUILT[name]


def episode(memory, b, t, style, seed):
    """(B, T, *pattern) in the memory's value range (binary for Bernoulli likelihoods)."""
    low, high = memory.value_range
    low, high = max(low, -1.0), min(high, 1.0)  # unbounded memories: [-1, 1]
    gen = torch.Generator().manual_seed(seed)
    shape = (b, t, *memory.pattern_shape)
    u = {
        "uniform": lambda: torch.rand(shape, generator=gen),
        "binary": lambda: (torch.rand(shape, generator=gen) > 0.5).float(),
        "all low": lambda: torch.zeros(shape),
        "all high": lambda: torch.ones(shape),
        "repeated": lambda: torch.rand((b, 1, *memory.pattern_shape), generator=gen).expand(shape).contiguous(),
    }[style]()
    if getattr(memory.config, "likelihood", None) == "bernoulli":
        u = (u > 0.5).float()
    return low + (high - low) * u


@pytest.mark.parametrize("name", sorted(TINY))
def test_memory_protocol_on_random_in_range_episodes(name):
    memory = tiny(name)
    shape, _, min_t = TINY[name]

    @settings(max_examples=2 if name in HEAVY else 5, deadline=None)
    @given(
        b=st.integers(1, 2),
        t=st.integers(min_t, 4),
        n=st.integers(min_t, 3),
        style=st.sampled_from(["uniform", "binary", "all low", "all high", "repeated"]),
        seed=st.integers(0, 2**31),
    )
    def check(b, t, n, style, seed):
        torch.manual_seed(seed)
        x = episode(memory, b, t, style, seed)
        try:
            state = memory.write(x)
        except NumericalError:
            assert style in DEGENERATE, f"{name}: NumericalError on a {style} episode"
            return
        queries = episode(memory, b, n, "uniform", seed + 1)
        read = memory.read(queries, state)
        assert read.shape == (b, n, *shape)
        assert torch.isfinite(read).all(), f"{name}: non-finite read on a {style} episode"
        if memory.generative:
            samples = memory.generate(state, n)
            assert samples.shape == (b, n, *shape) and torch.isfinite(samples).all()
        floats = memory.memory_floats(episode_length=t)
        assert isinstance(floats, int) and (floats == 0 if name in NO_MEMORY else floats > 0)

    check()
