"""Classical Hopfield networks: learning rules against hand computations, reading, capacity."""

import pytest
import torch

from engramlab.episodes.batch import EpisodeBatch
from engramlab.errors import BadConfig, BadInput
from engramlab.memories.base import build_memory
from engramlab.memories.hopfield import hebbian_weights, hopfield_energy, pseudo_inverse_weights, storkey_weights

RULES = ["hopfield-hebbian", "hopfield-storkey", "hopfield-pinv"]


def random_strings(gen, B, T, d):
    return torch.randint(0, 2, (B, T, d), generator=gen).float() * 2 - 1


def flip(x, p, gen):
    return torch.where(torch.rand(x.shape, generator=gen) < p, -x, x)


def test_hebbian_weights_match_hand_computed_three_patterns():
    x = torch.tensor([[[1, 1, -1, -1], [1, -1, 1, -1], [1, 1, 1, 1]]], dtype=torch.float32)
    # W_ij = (1/4) Σ_μ ξ_i ξ_j, e.g. W_01 = (1 − 1 + 1)/4, zero diagonal
    want = 0.25 * torch.tensor([[0, 1, 1, -1], [1, 0, -1, 1], [1, -1, 0, 1], [-1, 1, 1, 0]], dtype=torch.float32)
    assert torch.allclose(hebbian_weights(x)[0], want)


def test_storkey_weights_match_hand_computed_two_patterns():
    x = torch.tensor([[[1, 1, -1], [1, -1, 1]]], dtype=torch.float32)
    # pattern 1 on W = 0: W = ξξᵀ/3. Pattern 2: h = (−2/3, 0, 0), h_ij = h_i − W_ij ξ_j, and
    # ΔW_12 = (ξ1ξ2 − ξ1 h_21 − h_12 ξ2)/3 = (−1 − 1/3 − 1/3)/3 = −5/9, ΔW_01 = −1/3, ΔW_02 = +1/3.
    want = torch.tensor([[0, 0, 0], [0, 0, -8 / 9], [0, -8 / 9, 0]], dtype=torch.float32)
    assert torch.allclose(storkey_weights(x)[0], want, atol=1e-6)


def test_storkey_first_pattern_equals_hebbian(gen):
    x = random_strings(gen, 2, 1, 10)
    assert torch.allclose(storkey_weights(x), hebbian_weights(x), atol=1e-6)


@pytest.mark.parametrize("rule", [hebbian_weights, storkey_weights, pseudo_inverse_weights])
def test_weights_are_symmetric_with_zero_diagonal(rule, gen):
    w = rule(random_strings(gen, 3, 9, 24))
    assert torch.allclose(w, w.transpose(1, 2), atol=1e-6)
    assert torch.diagonal(w, dim1=1, dim2=2).abs().max() == 0


def test_pseudo_inverse_stores_d_minus_one_random_patterns_as_fixed_points(gen):
    d = 32
    x = random_strings(gen, 4, d - 1, d)
    memory = build_memory("hopfield-pinv", pattern_shape=(d,), update="sync", steps=1)
    assert torch.equal(memory.read(x, memory.write(x)), x)


@pytest.mark.parametrize("update", ["sync", "async"])
@pytest.mark.parametrize("name", RULES)
def test_read_recovers_pattern_from_one_flipped_bit_at_low_load(name, update, gen):
    d, T = 64, 3
    x = random_strings(gen, 4, T, d)
    query = x.clone()
    query[:, :, 5] *= -1
    memory = build_memory(name, pattern_shape=(d,), update=update)
    assert torch.equal(memory.read(query, memory.write(x)), x)


def test_async_read_never_increases_energy(gen):
    d = 48
    x = random_strings(gen, 3, 12, d)
    memory = build_memory("hopfield-hebbian", pattern_shape=(d,), update="async", steps=1)
    state = memory.write(x)
    query = flip(x, 0.3, gen)
    e0 = hopfield_energy(query, state.weights)
    e1 = hopfield_energy(memory.read(query, state), state.weights)
    assert (e1 <= e0 + 1e-5).all()


def _bit_error(name, T, gen, d=128, B=6):
    x = random_strings(gen, B, T, d)
    memory = build_memory(name, pattern_shape=(d,), update="sync", steps=10)
    read = memory.read(flip(x, 0.1, gen), memory.write(x))
    return (read != x).float().mean().item()


def test_capacity_effect_hebbian_small_error_at_low_load_large_at_high_load(gen):
    assert _bit_error("hopfield-hebbian", 6, gen) < 0.01  # T = 0.05 N
    assert _bit_error("hopfield-hebbian", 38, gen) > 0.05  # T = 0.3 N, beyond 0.138 N


def test_pseudo_inverse_beats_hebbian_at_high_load(gen):
    assert _bit_error("hopfield-pinv", 38, gen) < 0.5 * _bit_error("hopfield-hebbian", 38, gen)


@pytest.mark.parametrize("name", RULES)
def test_batched_write_and_read_equal_per_episode_loop(name, gen):
    x = random_strings(gen, 3, 7, 20)
    query = flip(x, 0.15, gen)
    memory = build_memory(name, pattern_shape=(20,), update="sync")
    state = memory.write(x)
    for b in range(3):
        single = memory.write(x[b : b + 1])
        assert torch.allclose(state.weights[b], single.weights[0], atol=1e-6)
        assert torch.equal(memory.read(query, state)[b], memory.read(query[b : b + 1], single)[0])


def test_unit_values_are_binarised_and_read_back_in_unit_range(gen):
    x = (torch.rand(2, 3, 1, 6, 6, generator=gen) > 0.5).float()
    memory = build_memory("hopfield-storkey", pattern_shape=(1, 6, 6), values="unit")
    query = x.clone()
    query[:, :, 0, 0, 0] = 0.4 + 0.2 * (1 - query[:, :, 0, 0, 0])  # grey values round to the other bit
    out = memory.read(query, memory.write(x))
    assert out.shape == x.shape and set(out.unique().tolist()) <= {0.0, 1.0}
    assert memory.value_range == (0.0, 1.0)


def test_memory_floats_is_upper_triangle():
    assert build_memory("hopfield-hebbian", pattern_shape=(128,)).memory_floats() == 128 * 127 // 2


def test_loss_reports_reconstruction_error(gen):
    x = random_strings(gen, 2, 3, 32)
    memory = build_memory("hopfield-hebbian", pattern_shape=(32,))
    loss, logs = memory.loss(EpisodeBatch(patterns=x, queries=x.clone(), targets=x))
    assert loss.item() == 0.0 and "squared_error" in logs


def test_bad_inputs_raise_clear_errors(gen):
    memory = build_memory("hopfield-hebbian", pattern_shape=(16,))
    with pytest.raises(BadInput, match="shape"):
        memory.write(torch.ones(2, 3, 15))
    with pytest.raises(BadInput, match="values must lie"):
        memory.write(torch.full((2, 3, 16), 2.0))
    with pytest.raises(BadInput, match="NaN"):
        memory.write(torch.full((2, 3, 16), float("nan")))
    with pytest.raises(BadInput, match="empty"):
        memory.write(torch.ones(2, 0, 16))
    state = memory.write(torch.ones(2, 3, 16))
    with pytest.raises(BadInput, match="do not fit"):
        memory.read(torch.ones(3, 1, 16), state)
    with pytest.raises(BadConfig, match="steps"):
        build_memory("hopfield-hebbian", pattern_shape=(16,), steps=0)
    with pytest.raises(BadConfig, match="update"):
        build_memory("hopfield-hebbian", pattern_shape=(16,), update="random")


def test_pseudo_inverse_with_d_patterns_has_zero_weights_and_returns_the_query(gen):
    d = 24
    x = random_strings(gen, 2, d, d)
    memory = build_memory("hopfield-pinv", pattern_shape=(d,), update="sync")
    state = memory.write(x)
    assert state.weights.abs().max() == 0
    query = flip(x, 0.2, gen)
    assert torch.equal(memory.read(query, state), query)
