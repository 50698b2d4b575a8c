"""Property-based tests (Hypothesis) of the episode pipeline: corruption specs and EpisodeSource.

Corruptions, on random shapes, value ranges and parameters: shapes and dtypes are kept, nothing
outside the mask changes, values stay in range where the spec says so, the fraction corrupted is
what the spec asks for, and the same generator seed gives the same result; any spec string either
parses or raises BadConfig. EpisodeSource: a batch is a pure function of (seed, split, step, rank).
Examples are bounded so the default run stays fast.
"""

import math

import torch
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from engramlab.episodes.corruption import KINDS, REGIONS, corrupt, parse_corruption
from engramlab.episodes.pipeline import DataConfig, EpisodeSource
from engramlab.errors import BadConfig

FAST = settings(max_examples=30, deadline=None)
RANGES = [(0.0, 1.0), (-1.0, 1.0), (-2.5, 3.0)]


@st.composite
def patterns(draw):
    """(x, value_range): x of shape (B, T, d) or (B, T, C, H, W), values in the range, maybe binary."""
    lead = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    if draw(st.booleans()):
        shape = (*lead, draw(st.integers(1, 12)))
    else:
        shape = (*lead, draw(st.integers(1, 3)), draw(st.integers(1, 9)), draw(st.integers(1, 9)))
    low, high = draw(st.sampled_from(RANGES))
    gen = torch.Generator().manual_seed(draw(st.integers(0, 2**31)))
    u = torch.rand(shape, generator=gen)
    if draw(st.booleans()):
        u = (u > 0.5).float()
    return low + (high - low) * u, (low, high)


def unit(lo=0.0, hi=1.0):
    return st.floats(lo, hi, allow_nan=False)


@st.composite
def specs(draw, x):
    """(kind, params, spec string) valid for x."""
    kind = draw(st.sampled_from(sorted(KINDS)))
    spatial = x.shape[-2:] if x.dim() == 5 else x.shape[-1:]
    params = {
        "flip": lambda: {"p": draw(unit())},
        "salt_pepper": lambda: {"p": draw(unit())},
        "block": lambda: {
            "size": draw(st.integers(1, min(spatial))),
            "noise": draw(st.sampled_from(["gaussian", "uniform", "binary", "zero"])),
            "clamp": draw(st.booleans()),
        },
        "gaussian": lambda: {"std": draw(unit(0.0, 2.0)), "clamp": draw(st.booleans())},
        "mask": lambda: {"region": draw(st.sampled_from(REGIONS)), "fill": draw(unit())},
        "speckle": lambda: {"std": draw(unit(0.0, 2.0)), "clamp": draw(st.booleans())},
        "poisson": lambda: {"scale": draw(st.floats(0.05, 500.0)), "clamp": draw(st.booleans())},
        "none": lambda: {},
    }[kind]()
    text = ",".join(f"{k}={str(v).lower() if isinstance(v, bool) else repr(v) if isinstance(v, float) else v}"
                    for k, v in params.items())  # fmt: skip
    return kind, params, f"{kind}:{text}" if text else kind


def stays_in_range(kind, params):
    if kind in ("flip", "salt_pepper", "mask", "none"):
        return True
    if kind == "block":
        return params["clamp"] or params["noise"] != "gaussian"
    return params["clamp"]


@FAST
@given(data=st.data())
def test_corruption_keeps_shape_touches_only_the_mask_and_respects_the_range(data):
    x, (low, high) = data.draw(patterns())
    kind, params, spec = data.draw(specs(x))
    assert parse_corruption(spec) == (kind, params)
    out, mask = corrupt(x, spec, torch.Generator().manual_seed(7), value_range=(low, high))
    assert out.shape == x.shape and out.dtype == x.dtype
    assert mask.shape == x.shape and mask.dtype == torch.bool
    assert torch.equal(out[~mask], x[~mask])
    if stays_in_range(kind, params):
        assert out.min() >= low - 1e-5 and out.max() <= high + 1e-5, spec
    again = corrupt(x, spec, torch.Generator().manual_seed(7), value_range=(low, high))
    assert torch.equal(out, again[0]) and torch.equal(mask, again[1])


@FAST
@given(data=st.data())
def test_the_fraction_corrupted_is_what_the_spec_asks(data):
    x, value_range = data.draw(patterns())
    kind, params, spec = data.draw(specs(x))
    _, mask = corrupt(x, spec, torch.Generator().manual_seed(3), value_range=value_range)
    per_pattern = mask.reshape(x.shape[0] * x.shape[1], -1).sum(1)
    image = x.dim() == 5
    channels = x.shape[2] if image else 1
    if kind in ("flip", "salt_pepper"):
        p, n = params["p"], x.numel()
        slack = math.sqrt(math.log(2 / 1e-6) / (2 * n))  # Hoeffding: fails with probability < 1e-6
        assert abs(mask.float().mean().item() - p) <= slack, (spec, mask.float().mean().item())
        if p in (0.0, 1.0):
            assert mask.all() if p == 1.0 else not mask.any()
    elif kind == "block":
        size = params["size"]
        assert (per_pattern == channels * (size * size if image else size)).all()
    elif kind == "mask":
        h, w = (x.shape[-2], x.shape[-1]) if image else (1, x.shape[-1])
        if not image:
            expected = w // 2
        elif params["region"] in ("top_half", "bottom_half"):
            expected = channels * (h // 2) * w
        else:
            expected = channels * h * (w // 2)
        assert (per_pattern == expected).all()
    elif kind in ("gaussian", "poisson"):
        assert mask.all() if kind == "poisson" or params["std"] > 0 else not mask.any()
    elif kind == "none":
        assert not mask.any()


TEXT = st.text(alphabet=st.characters(min_codepoint=32, max_codepoint=126) | st.sampled_from("é∞−\x00"), max_size=40)
SPEC_TEXT = st.one_of(
    TEXT,
    st.builds(
        lambda k, key, v: f"{k}:{key}={v}",
        st.sampled_from([*KINDS, "blur", ""]),
        st.sampled_from(["p", "size", "noise", "std", "scale", "clamp", "region", "fill", "x", ""]),
        st.one_of(TEXT, st.sampled_from(["nan", "inf", "-inf", "-1", "1e9", "0", "2", "true"])),
    ),
)


@settings(max_examples=60, deadline=None)
@given(spec=SPEC_TEXT)
@example("gaussian:std=nan")  # each of these made NaN or Inf queries before std/scale had to be finite
@example("speckle:std=nan")
@example("gaussian:std=inf,clamp=false")
@example("poisson:scale=inf,clamp=false")
@example("flip:p=nan")
@example("block:size=1e3")
def test_any_spec_string_parses_or_raises_bad_config(spec):
    x = torch.rand(2, 2, 1, 6, 6)
    try:
        kind, params = parse_corruption(spec)
        out, _ = corrupt(x, spec, torch.Generator().manual_seed(0), value_range=(0.0, 1.0))
    except BadConfig:
        return
    if kind != "mask":  # mask fills with any value it is given, NaN included
        assert torch.isfinite(out).all(), spec


# ----------------------------------------------------------------------------- EpisodeSource


@st.composite
def data_configs(draw):
    dataset = draw(st.sampled_from(["binary_strings", "digits"]))
    t = draw(st.integers(1, 4))
    fields = dict(
        dataset=dataset,
        episode_length=t,
        batch_size=draw(st.integers(1, 3)),
        corruption=draw(st.sampled_from([None, "flip:p=0.2", "block:size=2,noise=uniform", "gaussian:std=0.3"])),
        queries_per_episode=draw(st.one_of(st.none(), st.integers(1, t))),
        string_dim=draw(st.integers(4, 32)),
    )
    if dataset == "digits":
        fields["class_structured"] = draw(st.booleans())
        fields["value_range"] = draw(st.sampled_from([None, (-1.0, 1.0)]))
    return DataConfig(**fields)


def same_batch(a, b):
    for name in ("patterns", "queries", "targets", "mask", "labels"):
        x, y = getattr(a, name), getattr(b, name)
        assert (x is None) == (y is None), name
        if x is not None:
            assert torch.equal(x, y), name


SEEDS = st.integers(0, 2**40)
STEPS = st.integers(0, 10**6)
RANKS = st.integers(0, 7)


@settings(max_examples=25, deadline=None)
@given(config=data_configs(), split=st.sampled_from(["train", "val", "test"]), seed=SEEDS, step=STEPS, rank=RANKS)
def test_a_batch_is_a_pure_function_of_seed_split_step_and_rank(config, split, seed, step, rank):
    first = EpisodeSource(config, split, seed)
    second = EpisodeSource(config, split, seed)
    second.batch(step + 1, rank)  # other calls before it change nothing
    second.batch(step, rank + 1)
    batch = first.batch(step, rank)
    same_batch(batch, second.batch(step, rank))
    b, t = config.batch_size, config.episode_length
    assert batch.patterns.shape == (b, t, *first.pattern_shape)
    low, high = first.value_range
    assert batch.patterns.min() >= low - 1e-6 and batch.patterns.max() <= high + 1e-6
    if config.corruption is not None:
        n = config.queries_per_episode or t
        assert batch.queries.shape == (b, n, *first.pattern_shape)
        assert torch.equal(batch.targets, batch.patterns[:, :n])


@settings(max_examples=25, deadline=None)
@given(a=st.tuples(SEEDS, STEPS, RANKS), b=st.tuples(SEEDS, STEPS, RANKS))
def test_different_seed_step_or_rank_give_different_episodes(a, b):
    assume(a != b)
    config = DataConfig(dataset="binary_strings", episode_length=2, batch_size=2, string_dim=32)
    x = EpisodeSource(config, "train", a[0]).batch(a[1], a[2]).patterns
    y = EpisodeSource(config, "train", b[0]).batch(b[1], b[2]).patterns
    assert not torch.equal(x, y)  # 128 random bits: equal with probability 2^-128
