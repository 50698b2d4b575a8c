"""Modern Hopfield store and its learned variant: one-step retrieval on digits, overfit, errors."""

import math

import pytest
import torch
from sklearn.datasets import load_digits

from engramlab.episodes.batch import EpisodeBatch
from engramlab.errors import BadConfig, BadInput
from engramlab.memories.base import build_memory
from engramlab.memories.hopfield import default_beta, retrieve


@pytest.fixture(scope="module")
def digits():
    return torch.tensor(load_digits().images, dtype=torch.float32)[:, None] / 16.0  # (1797, 1, 8, 8)


def digit_episodes(digits, gen, B=16, T=8):
    idx = torch.stack([torch.randperm(len(digits), generator=gen)[:T] for _ in range(B)])
    return digits[idx]  # (B, T, 1, 8, 8)


def block_corrupt(x, gen, size=3):
    """A random size×size block of each image replaced by uniform noise."""
    B, T = x.shape[:2]
    H, W = x.shape[-2:]
    rows = torch.arange(H)[None, None, :, None]
    cols = torch.arange(W)[None, None, None, :]
    top = torch.randint(0, H - size + 1, (B, T, 1, 1), generator=gen)
    left = torch.randint(0, W - size + 1, (B, T, 1, 1), generator=gen)
    block = ((rows >= top) & (rows < top + size) & (cols >= left) & (cols < left + size))[:, :, None]
    return torch.where(block, torch.rand(x.shape, generator=gen), x)


def test_default_modern_hopfield_retrieves_digits_in_one_step_from_block_corruption(digits, gen):
    x = digit_episodes(digits, gen)
    query = block_corrupt(x, gen)
    memory = build_memory("modern-hopfield", pattern_shape=(1, 8, 8))
    read = memory.read(query, memory.write(x))
    nearest = torch.cdist(read.flatten(2), x.flatten(2)).argmin(-1)
    assert (nearest == torch.arange(8)).float().mean() > 0.9
    assert (read - x).pow(2).flatten(2).sum(-1).mean() < 0.25 * (query - x).pow(2).flatten(2).sum(-1).mean()


def test_retrieve_with_large_beta_is_nearest_neighbour(gen):
    stored = torch.randn(2, 5, 10, generator=gen)
    query = stored + 0.1 * torch.randn(2, 5, 10, generator=gen)
    assert torch.allclose(retrieve(query, stored, beta=1e4), stored, atol=1e-5)


def test_retrieve_with_tiny_beta_returns_the_mean_pattern(gen):
    stored = torch.randn(2, 5, 10, generator=gen)
    out = retrieve(torch.randn(2, 3, 10, generator=gen), stored, beta=1e-9, similarity="dot")
    assert torch.allclose(out, stored.mean(1, keepdim=True).expand(2, 3, 10), atol=1e-5)


def test_retrieve_dot_matches_ramsauer_formula(gen):
    X = torch.randn(6, 12, generator=gen)  # T = 6 stored patterns, d = 12
    xi = torch.randn(12, generator=gen)
    want = X.T @ torch.softmax(0.7 * X @ xi, dim=0)  # ξ_new = X softmax(β Xᵀ ξ), X as d × T
    got = retrieve(xi[None], X, beta=0.7, similarity="dot")[0]
    assert torch.allclose(got, want, atol=1e-6)


def test_distance_similarity_equals_softmax_of_negative_squared_distance(gen):
    X = torch.rand(1, 6, 12, generator=gen)
    xi = torch.rand(1, 2, 12, generator=gen)
    weights = torch.softmax(-0.5 * 3.0 * torch.cdist(xi, X).pow(2), dim=-1)
    assert torch.allclose(retrieve(xi, X, beta=3.0), weights @ X, atol=1e-5)


def test_batched_read_equals_per_episode_loop(digits, gen):
    x = digit_episodes(digits, gen, B=4)
    query = block_corrupt(x, gen)
    memory = build_memory("modern-hopfield", pattern_shape=(1, 8, 8), steps=3)
    batched = memory.read(query, memory.write(x))
    for b in range(4):
        single = memory.read(query[b : b + 1], memory.write(x[b : b + 1]))
        assert torch.allclose(batched[b], single[0], atol=1e-6)


def test_memory_floats_counts_the_stored_patterns():
    memory = build_memory("modern-hopfield", pattern_shape=(1, 8, 8))
    assert memory.memory_floats(episode_length=10) == 640
    with pytest.raises(BadInput, match="episode_length"):
        memory.memory_floats()


def test_default_beta_scales_with_dimension():
    assert default_beta(64) == pytest.approx(2.0) and default_beta(256) == pytest.approx(1.0)


def test_learned_hopfield_loss_falls_on_a_fixed_batch(digits, gen):
    torch.manual_seed(0)
    x = digit_episodes(digits, gen, B=8, T=6)
    batch = EpisodeBatch(patterns=x, queries=block_corrupt(x, gen, size=4), targets=x)
    memory = build_memory("modern-hopfield-learned", pattern_shape=(1, 8, 8), key_dim=16, beta=0.5)
    optimizer = torch.optim.Adam(memory.parameters(), lr=3e-2)
    first = memory.loss(batch)[0].item()
    for _ in range(60):
        optimizer.zero_grad()
        loss, logs = memory.loss(batch)
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.5 * first
    assert set(logs) == {"squared_error", "beta"}


def test_learned_hopfield_gradients_reach_projections_and_beta(digits, gen):
    x = digit_episodes(digits, gen, B=2, T=4)
    memory = build_memory("modern-hopfield-learned", pattern_shape=(1, 8, 8), steps=2)
    memory.loss(EpisodeBatch(patterns=x, queries=block_corrupt(x, gen), targets=x))[0].backward()
    for name, p in memory.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_learned_hopfield_memory_floats_and_parameter_count():
    memory = build_memory("modern-hopfield-learned", pattern_shape=(1, 8, 8), key_dim=16)
    assert memory.memory_floats(episode_length=5) == 5 * 64
    assert sum(p.numel() for p in memory.parameters()) == 2 * 16 * 64 + 1
    assert memory.beta.item() == pytest.approx(default_beta(64))


def test_modern_bad_inputs_raise_clear_errors():
    memory = build_memory("modern-hopfield", pattern_shape=(1, 8, 8))
    with pytest.raises(BadInput, match="shape"):
        memory.write(torch.zeros(2, 3, 64))
    with pytest.raises(BadInput, match="floating-point"):
        memory.write(torch.zeros(2, 3, 1, 8, 8, dtype=torch.long))
    state = memory.write(torch.zeros(2, 3, 1, 8, 8))
    with pytest.raises(BadInput, match="does not fit"):
        memory.read(torch.zeros(4, 3, 1, 8, 8), state)
    with pytest.raises(BadInput, match="do not match"):
        retrieve(torch.zeros(2, 3, 5), torch.zeros(2, 3, 6))
    with pytest.raises(BadConfig, match="beta"):
        build_memory("modern-hopfield", pattern_shape=(8,), beta=-1.0)
    with pytest.raises(BadConfig, match="unknown config key"):
        build_memory("modern-hopfield", pattern_shape=(8,), temperature=1.0)
    assert math.isinf(memory.value_range[1])


def test_untrained_learned_hopfield_with_full_key_dim_reads_like_the_plain_store(digits, gen):
    x = digit_episodes(digits, gen, B=4)
    query = block_corrupt(x, gen)
    learned = build_memory("modern-hopfield-learned", pattern_shape=(1, 8, 8), key_dim=64)
    plain = build_memory("modern-hopfield", pattern_shape=(1, 8, 8))
    with torch.no_grad():
        assert torch.allclose(learned.read(query, learned.write(x)), plain.read(query, plain.write(x)), atol=1e-4)
