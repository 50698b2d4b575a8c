"""Metrics against brute force and scipy."""

import math

import numpy as np
import pytest
import torch
from scipy import stats

from engramlab.errors import BadInput
from engramlab.evaluation.metrics import (
    hamming_error,
    mean_ci,
    nll_to_bits_per_dim,
    retrieval_accuracy,
    squared_error,
    summarize,
)


def test_mean_ci_matches_scipy_t_interval(gen):
    x = torch.randn(37, generator=gen, dtype=torch.float64)
    mean, half = mean_ci(x)
    lo, hi = stats.t.interval(0.95, df=36, loc=x.mean().item(), scale=stats.sem(x.numpy()))
    assert mean == pytest.approx(x.mean().item())
    assert half == pytest.approx((hi - lo) / 2, rel=1e-9)


def test_mean_ci_over_dim_of_matrix(gen):
    x = torch.randn(10, 3, generator=gen, dtype=torch.float64)
    mean, half = mean_ci(x, dim=0)
    for j in range(3):
        m, h = mean_ci(x[:, j])
        assert mean[j].item() == pytest.approx(m) and half[j].item() == pytest.approx(h)


def test_mean_ci_of_single_value_has_nan_width():
    mean, half = mean_ci([2.0])
    assert mean == 2.0 and math.isnan(half)


def test_mean_ci_rejects_empty():
    with pytest.raises(BadInput, match="at least one"):
        mean_ci([])


def test_squared_error_is_sum_over_dims_mean_over_patterns(gen):
    read, target = torch.rand(4, 5, 2, 3, generator=gen), torch.rand(4, 5, 2, 3, generator=gen)
    brute = [np.mean([float(((read[b, n] - target[b, n]) ** 2).sum()) for n in range(5)]) for b in range(4)]
    assert torch.allclose(squared_error(read, target), torch.tensor(brute, dtype=torch.float32), atol=1e-5)


def test_hamming_error_is_fraction_of_wrong_signs_for_pm1(gen):
    target = torch.randint(0, 2, (3, 4, 16), generator=gen).float() * 2 - 1
    read = target.clone()
    read[0, 0, :4] *= -1  # 4 wrong bits of 16 in one of 4 patterns of episode 0
    read[1, :, 0] *= -1  # 1 wrong bit in every pattern of episode 1
    err = hamming_error(read * 0.7, target)  # scaling does not change the sign
    assert torch.allclose(err, torch.tensor([4 / 64, 1 / 16, 0.0]))
    assert torch.allclose(hamming_error(read, target, count=True), torch.tensor([1.0, 1.0, 0.0]))


def test_hamming_error_thresholds_unit_data_at_half():
    target = torch.tensor([[[0.0, 1.0, 1.0, 0.0]]])
    read = torch.tensor([[[0.4, 0.6, 0.2, 0.9]]])
    assert hamming_error(read, target).item() == pytest.approx(0.5)


def test_retrieval_accuracy_matches_brute_force(gen):
    stored = torch.randn(3, 6, 10, generator=gen)
    idx = torch.randint(0, 6, (3, 5), generator=gen)
    read = stored.gather(1, idx[..., None].expand(-1, -1, 10)) + 0.8 * torch.randn(3, 5, 10, generator=gen)
    brute = torch.tensor(
        [
            np.mean([int(torch.argmin(((stored[b] - read[b, n]) ** 2).sum(-1))) == int(idx[b, n]) for n in range(5)])
            for b in range(3)
        ],
        dtype=torch.float32,
    )
    assert torch.allclose(retrieval_accuracy(read, stored, idx), brute)


def test_retrieval_accuracy_rejects_out_of_range_index():
    with pytest.raises(BadInput, match="out of range"):
        retrieval_accuracy(torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), torch.tensor([[0, 2]]))


def test_bits_per_dim_formulas():
    assert nll_to_bits_per_dim(784 * math.log(2), 784) == pytest.approx(1.0)
    # a uniform density on [0,1)^D is worth exactly 8 bits/dim once dequantised to 256 levels
    assert nll_to_bits_per_dim(0.0, 3072, continuous=True) == pytest.approx(8.0)


def test_metric_rejects_mismatched_shapes():
    with pytest.raises(BadInput, match="differs"):
        squared_error(torch.zeros(2, 3, 4), torch.zeros(2, 3, 5))


def test_summarize_gives_mean_and_ci_keys():
    out = summarize({"error": torch.tensor([1.0, 2.0, 3.0])})
    assert out["error"] == pytest.approx(2.0)
    assert out["error_ci"] == pytest.approx(stats.t.ppf(0.975, 2) * 1.0 / math.sqrt(3))
