"""Corruptions: statistics, exact block geometry, mask correctness, ranges, spec parsing."""

import pytest
import torch

from engramlab.episodes.corruption import corrupt, parse_corruption
from engramlab.errors import BadConfig, BadInput


def strings(gen, b=8, t=16, d=128):
    return torch.randint(0, 2, (b, t, d), generator=gen).float() * 2 - 1


def images(gen, b=4, t=6, c=3, h=20, w=20):
    return torch.rand(b, t, c, h, w, generator=gen)


def test_flip_rate_is_about_p_and_only_masked_bits_change(gen):
    x = strings(gen, 32, 32, 128)
    q, mask = corrupt(x, "flip:p=0.1", gen)
    rate = mask.float().mean().item()
    assert abs(rate - 0.1) < 0.005  # 131k Bernoulli(0.1): sd ≈ 0.0008
    assert torch.equal(q[mask], -x[mask]) and torch.equal(q[~mask], x[~mask])


def test_flip_on_zero_one_strings_complements_bits(gen):
    x = (strings(gen) > 0).float()
    q, mask = corrupt(x, "flip:p=0.3", gen)
    assert torch.equal(q[mask], 1 - x[mask]) and set(q.unique().tolist()) <= {0.0, 1.0}


def test_salt_and_pepper_sets_about_p_of_values_to_the_extremes_half_each(gen):
    x = torch.full((16, 16, 1, 16, 16), 0.5)
    q, mask = corrupt(x, "salt_pepper:p=0.2", gen)
    assert abs(mask.float().mean().item() - 0.2) < 0.01
    assert set(q[mask].unique().tolist()) == {0.0, 1.0} and abs(q[mask].mean().item() - 0.5) < 0.02
    assert (q[~mask] == 0.5).all()


@pytest.mark.parametrize("noise", ["gaussian", "uniform", "binary", "zero"])
def test_block_is_exactly_one_n_by_n_square_per_pattern_shared_by_channels(gen, noise):
    x = images(gen)
    q, mask = corrupt(x, f"block:size=7,noise={noise}", gen)
    assert mask.shape == x.shape
    per_pattern = mask.flatten(2).sum(-1)
    assert (per_pattern == 3 * 49).all()
    assert torch.equal(mask[:, :, 0], mask[:, :, 1]) and torch.equal(mask[:, :, 0], mask[:, :, 2])
    rows, cols = mask[:, :, 0].any(-1), mask[:, :, 0].any(-2)  # (B, T, H), (B, T, W)
    assert (rows.sum(-1) == 7).all() and (cols.sum(-1) == 7).all()
    idx = torch.arange(20)
    first_row = torch.where(rows, idx, 99).min(-1).values
    last_row = torch.where(rows, idx, -1).max(-1).values
    assert (last_row - first_row == 6).all()  # contiguous
    assert torch.equal(q[~mask], x[~mask])
    if noise == "zero":
        assert (q[mask] == 0).all()
    if noise == "binary":
        assert set(q[mask].unique().tolist()) == {0.0, 1.0}
    if noise == "uniform":
        assert q[mask].min() >= 0 and q[mask].max() <= 1


def test_block_positions_cover_the_whole_image_uniformly(gen):
    x = torch.zeros(1, 4000, 1, 10, 10)
    _, mask = corrupt(x, "block:size=4,noise=zero", gen)
    corner_rows = mask[:, :, 0].any(-1).float().argmax(-1)  # first row of each block: uniform on 0..6
    counts = torch.bincount(corner_rows.flatten(), minlength=7).float()
    assert len(counts) == 7 and ((counts - 4000 / 7).abs() / (4000 / 7)).max() < 0.15


def test_block_gaussian_noise_is_standard_normal_and_not_clamped(gen):
    x = torch.zeros(64, 64, 1, 28, 28)
    q, mask = corrupt(x, "block:size=7,noise=gaussian", gen)
    vals = q[mask]
    assert abs(vals.mean().item()) < 0.01 and abs(vals.std().item() - 1) < 0.01 and vals.min() < 0


def test_block_on_strings_is_a_contiguous_run(gen):
    x = strings(gen)
    q, mask = corrupt(x, "block:size=10,noise=zero", gen)
    assert (mask.sum(-1) == 10).all() and (q[mask] == 0).all()
    starts = mask.float().argmax(-1, keepdim=True)
    assert torch.equal(mask, (torch.arange(128) >= starts) & (torch.arange(128) < starts + 10))


def test_additive_gaussian_has_the_given_std_and_is_clamped_to_range(gen):
    x = torch.full((32, 32, 256), 0.5)
    q, mask = corrupt(x, "gaussian:std=0.1", gen)
    assert mask.all() and abs((q - x).std().item() - 0.1) < 0.002
    q2, _ = corrupt(torch.rand(8, 8, 64, generator=gen), "gaussian:std=2.0", gen)
    assert q2.min() >= 0 and q2.max() <= 1
    q3, _ = corrupt(x, "gaussian:std=2.0,clamp=false", gen)
    assert q3.max() > 1


def test_speckle_is_multiplicative_and_clamped(gen):
    x = torch.full((32, 32, 256), 0.25)
    q, _ = corrupt(x, "speckle:std=0.2,clamp=false", gen)
    assert abs(((q - x) / x).std().item() - 0.2) < 0.003
    zeros = torch.zeros(4, 4, 16)
    assert torch.equal(corrupt(zeros, "speckle:std=0.5", gen)[0], zeros)
    assert corrupt(torch.ones(4, 4, 16), "speckle:std=1.0", gen)[0].max() <= 1


@pytest.mark.parametrize(
    "region, rows, cols",
    [
        ("top_half", slice(0, 5), slice(None)),
        ("bottom_half", slice(5, 10), slice(None)),
        ("left_half", slice(None), slice(0, 5)),
        ("right_half", slice(None), slice(5, 10)),
    ],
)
def test_mask_region_covers_exactly_the_named_half(gen, region, rows, cols):
    x = torch.rand(2, 3, 1, 10, 10, generator=gen) + 1
    q, mask = corrupt(x, f"mask:region={region}", gen)
    expected = torch.zeros(10, 10, dtype=torch.bool)
    expected[rows, cols] = True
    assert torch.equal(mask, expected.expand_as(mask)) and (q[mask] == 0).all() and torch.equal(q[~mask], x[~mask])


def test_mask_on_strings_masks_the_second_half_with_fill(gen):
    x = strings(gen, 2, 2, 8)
    q, mask = corrupt(x, "mask:region=bottom_half,fill=0.5", gen)
    assert mask[..., 4:].all() and not mask[..., :4].any() and (q[..., 4:] == 0.5).all()


def test_corruption_is_deterministic_given_the_generator_and_keeps_device_and_dtype(gen):
    x = images(gen)
    a = corrupt(x, "salt_pepper:p=0.3", torch.Generator().manual_seed(5))
    b = corrupt(x, "salt_pepper:p=0.3", torch.Generator().manual_seed(5))
    assert torch.equal(a[0], b[0]) and a[0].dtype == x.dtype and a[1].dtype == torch.bool


def test_none_returns_an_unchanged_copy_and_empty_mask(gen):
    x = images(gen)
    q, mask = corrupt(x, "none", gen)
    assert torch.equal(q, x) and not mask.any()


def test_parse_corruption_types_parameters():
    assert parse_corruption("block:size=7,noise=gaussian") == ("block", {"size": 7, "noise": "gaussian"})
    assert parse_corruption(" flip : p=0.25 ") == ("flip", {"p": 0.25})
    assert parse_corruption("gaussian:std=1,clamp=false") == ("gaussian", {"std": 1.0, "clamp": False})


@pytest.mark.parametrize(
    "spec, message",
    [
        ("blur:r=1", "unknown corruption kind 'blur'"),
        ("flip:q=0.1", "unknown parameter 'q' for corruption 'flip'"),
        ("flip:p=lots", "p='lots' must be float"),
        ("block:size", "key=value"),
        ("", "non-empty"),
    ],
)
def test_bad_specs_raise_bad_config_naming_the_problem(spec, message):
    with pytest.raises(BadConfig, match=message):
        parse_corruption(spec)


def test_bad_values_and_inputs_are_rejected(gen):
    with pytest.raises(BadConfig, match="in \\[0, 1\\]"):
        corrupt(torch.zeros(1, 1, 4), "flip:p=1.5", gen)
    with pytest.raises(BadConfig, match="exceeds"):
        corrupt(torch.zeros(1, 1, 1, 4, 4), "block:size=5", gen)
    with pytest.raises(BadConfig, match="noise"):
        corrupt(torch.zeros(1, 1, 1, 4, 4), "block:size=2,noise=pink", gen)
    with pytest.raises(BadConfig, match="region"):
        corrupt(torch.zeros(1, 1, 1, 4, 4), "mask:region=middle", gen)
    with pytest.raises(BadInput, match="floating-point"):
        corrupt(torch.zeros(1, 1, 4, dtype=torch.long), "flip:p=0.1", gen)


def test_poisson_shot_noise_is_mean_preserving_with_variance_x_over_scale(gen):
    x = torch.full((64, 64, 256), 0.4)
    q, mask = corrupt(x, "poisson:scale=20,clamp=false", gen)
    assert mask.all() and abs(q.mean().item() - 0.4) < 0.003
    assert abs(q.var().item() / (0.4 / 20) - 1) < 0.02  # Var = x/scale
    q2, _ = corrupt(torch.rand(8, 8, 64, generator=gen), "poisson:scale=2", gen)
    assert q2.min() >= 0 and q2.max() <= 1
