"""EpisodeSampler: shapes, determinism, distinct patterns per episode, class structure, errors."""

import pytest
import torch

from engramlab.episodes.datasets import PatternSet, load_dataset
from engramlab.episodes.sampler import EpisodeSampler
from engramlab.errors import BadConfig


def toy_set(n=50, classes=5, labelled=True):
    x = torch.arange(n, dtype=torch.float32).view(n, 1) / n
    labels = torch.arange(n) % classes if labelled else None
    return PatternSet(x, labels, "toy", "train")


def test_sample_shapes_and_labels_follow_the_patterns():
    ps = toy_set()
    patterns, labels = EpisodeSampler(ps, episode_length=7, batch_size=4).sample(torch.Generator().manual_seed(0))
    assert patterns.shape == (4, 7, 1) and labels.shape == (4, 7)
    idx = (patterns[..., 0] * 50).round().long()
    assert torch.equal(labels, idx % 5)


def test_same_generator_seed_gives_the_same_episodes_and_another_seed_differs():
    s = EpisodeSampler(toy_set(), 10, 8)
    a = s.sample(torch.Generator().manual_seed(3))[0]
    b = s.sample(torch.Generator().manual_seed(3))[0]
    c = s.sample(torch.Generator().manual_seed(4))[0]
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_episodes_hold_distinct_patterns_even_when_t_equals_n():
    s = EpisodeSampler(toy_set(n=20), episode_length=20, batch_size=16)
    idx = s.sample_indices(torch.Generator().manual_seed(0))
    for row in idx:
        assert len(set(row.tolist())) == 20


def test_every_pattern_is_drawn_about_equally_often():
    s = EpisodeSampler(toy_set(n=10), episode_length=3, batch_size=20000)
    counts = torch.bincount(s.sample_indices(torch.Generator().manual_seed(1)).flatten(), minlength=10).float()
    expected = 20000 * 3 / 10
    assert ((counts - expected).abs() / expected).max() < 0.05


def test_class_structured_episodes_use_exactly_k_classes_with_balanced_counts():
    s = EpisodeSampler(
        toy_set(n=100, classes=10), episode_length=8, batch_size=32, class_structured=True, classes_per_episode=3
    )
    idx = s.sample_indices(torch.Generator().manual_seed(0))
    labels = s.patternset.labels[idx]
    for row_idx, row in zip(idx, labels):
        assert len(set(row_idx.tolist())) == 8
        counts = sorted(torch.bincount(row, minlength=10)[torch.bincount(row, minlength=10) > 0].tolist())
        assert counts == [2, 3, 3]


def test_dynamic_binarization_resamples_binary_patterns_per_episode():
    ps = PatternSet(torch.full((30, 4), 0.5), None, "toy", "train", dynamic_binarize=True)
    s = EpisodeSampler(ps, 30, 64)
    patterns, labels = s.sample(torch.Generator().manual_seed(0))
    assert labels is None
    assert set(patterns.unique().tolist()) == {0.0, 1.0}
    assert abs(patterns.mean().item() - 0.5) < 0.05


def test_digits_class_structured_default_uses_every_class():
    s = EpisodeSampler(load_dataset("digits", "train"), 20, 2, class_structured=True)
    assert s.classes_per_episode == 10
    _, labels = s.sample(torch.Generator().manual_seed(0))
    assert all(len(set(r.tolist())) == 10 for r in labels)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"episode_length": 51, "batch_size": 1}, "exceeds"),
        ({"episode_length": 0, "batch_size": 1}, "episode_length"),
        ({"episode_length": 2, "batch_size": 0}, "batch_size"),
        ({"episode_length": 2, "batch_size": 1.5}, "batch_size"),
        ({"episode_length": 30, "batch_size": 1, "class_structured": True, "classes_per_episode": 2}, "examples"),
    ],
)
def test_bad_arguments_raise_bad_config_naming_the_problem(kwargs, message):
    with pytest.raises(BadConfig, match=message):
        EpisodeSampler(toy_set(), **kwargs)


def test_empty_set_and_unlabelled_class_structure_are_rejected():
    with pytest.raises(BadConfig, match="empty"):
        EpisodeSampler(PatternSet(torch.zeros(0, 3), None, "e", "train"), 1, 1)
    with pytest.raises(BadConfig, match="labels"):
        EpisodeSampler(toy_set(labelled=False), 2, 1, class_structured=True)
