"""EpisodeSource: determinism in (seed, split, step, rank), resume equivalence, queries, config errors."""

import pytest
import torch

from engramlab.config import from_dict, to_dict
from engramlab.episodes.pipeline import DataConfig, EpisodeSource
from engramlab.errors import BadConfig


def equal_batches(a, b):
    return all(
        (x is None and y is None) or torch.equal(x, y)
        for x, y in [(a.patterns, b.patterns), (a.queries, b.queries), (a.mask, b.mask), (a.labels, b.labels)]
    )


def test_batch_is_a_pure_function_of_seed_split_step_and_rank():
    cfg = DataConfig(dataset="digits", episode_length=8, batch_size=4)
    a, b = EpisodeSource(cfg, "train", seed=1), EpisodeSource(cfg, "train", seed=1)
    assert equal_batches(a.batch(5), b.batch(5))
    assert not torch.equal(a.batch(5).patterns, a.batch(6).patterns)
    assert not torch.equal(a.batch(5).patterns, a.batch(5, rank=1).patterns)
    assert not torch.equal(a.batch(5).patterns, EpisodeSource(cfg, "train", seed=2).batch(5).patterns)


def test_a_resumed_stream_equals_the_uninterrupted_one():
    cfg = DataConfig(dataset="binary_strings", episode_length=6, batch_size=3, corruption="flip:p=0.2")
    uninterrupted = [EpisodeSource(cfg, "train", 7).batch(s) for s in range(6)]
    first = EpisodeSource(cfg, "train", 7)
    _ = [first.batch(s) for s in range(3)]
    resumed = EpisodeSource(cfg, "train", 7)  # a new process picks up at step 3
    assert all(equal_batches(uninterrupted[s], resumed.batch(s)) for s in range(3, 6))


def test_queries_are_corrupted_copies_of_the_first_n_stored_patterns():
    cfg = DataConfig(
        dataset="digits", episode_length=8, batch_size=4, corruption="mask:region=top_half", queries_per_episode=5
    )
    b = EpisodeSource(cfg, "val", 0).batch(0)
    assert b.queries.shape == (4, 5, 1, 8, 8) and torch.equal(b.targets, b.patterns[:, :5])
    assert torch.equal(b.queries[~b.mask], b.targets[~b.mask]) and (b.queries[b.mask] == 0).all()
    assert b.labels.shape == (4, 8)


def test_binary_strings_source_yields_plus_minus_one_strings():
    s = EpisodeSource(DataConfig(dataset="binary_strings", string_dim=32, corruption="flip:p=0.1"), "test", 0)
    b = s.batch(0)
    assert s.pattern_shape == (32,) and s.value_range == (-1.0, 1.0)
    assert set(b.patterns.unique().tolist()) == {-1.0, 1.0} and set(b.queries.unique().tolist()) == {-1.0, 1.0}


def test_value_range_maps_images_to_plus_minus_one():
    s = EpisodeSource(DataConfig(dataset="digits", value_range=(-1.0, 1.0), corruption=None), "train", 0)
    b = s.batch(0)
    assert s.value_range == (-1.0, 1.0) and b.queries is None
    assert b.patterns.min() >= -1 and b.patterns.max() <= 1 and b.patterns.min() < -0.99


def test_fixed_batches_are_identical_for_every_caller():
    cfg = DataConfig(dataset="digits", episode_length=4, batch_size=2)
    a, b = EpisodeSource(cfg, "test", 3).fixed_batches(3), EpisodeSource(cfg, "test", 3).fixed_batches(3)
    assert len(a) == 3 and all(equal_batches(x, y) for x, y in zip(a, b))


def test_data_config_round_trips_and_rejects_bad_values():
    cfg = from_dict(DataConfig, {"dataset": "omniglot", "image_size": 28, "value_range": [-1, 1]})
    assert cfg.value_range == (-1.0, 1.0) and from_dict(DataConfig, to_dict(cfg)) == cfg
    with pytest.raises(BadConfig, match="unknown dataset"):
        DataConfig(dataset="imagenet")
    with pytest.raises(BadConfig, match="unknown corruption kind 'blur'"):
        DataConfig(corruption="blur:r=2")
    with pytest.raises(BadConfig, match="queries_per_episode"):
        DataConfig(episode_length=4, queries_per_episode=5)
    with pytest.raises(BadConfig, match="split"):
        EpisodeSource(DataConfig(), "dev", 0)


def test_dynamic_binarization_is_resampled_per_step_but_reproducible(shared_data):
    cfg = DataConfig(
        dataset="binarized_mnist",
        binarize="dynamic",
        data_dir=str(shared_data),
        episode_length=4,
        batch_size=2,
        corruption="flip:p=0.1",
    )
    source = EpisodeSource(cfg, "train", 0)
    a, b = source.batch(0), source.batch(0)
    assert torch.equal(a.patterns, b.patterns) and set(a.patterns.unique().tolist()) == {0.0, 1.0}


def test_class_structured_omniglot_episodes(shared_data):
    cfg = DataConfig(
        dataset="omniglot",
        data_dir=str(shared_data),
        episode_length=10,
        batch_size=3,
        class_structured=True,
        classes_per_episode=2,
    )
    b = EpisodeSource(cfg, "test", 0).batch(0)
    assert b.patterns.shape == (3, 10, 1, 28, 28)
    assert all(len(set(row.tolist())) == 2 for row in b.labels)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_batches_and_corruptions_follow_the_device():
    from engramlab.episodes.corruption import corrupt

    b = EpisodeSource(DataConfig(), "train", 0).batch(0).to("cuda")
    for spec in ("flip:p=0.1", "block:size=3,noise=gaussian", "mask:region=left_half", "speckle:std=0.1"):
        q, m = corrupt(b.patterns, spec, torch.Generator(device="cuda").manual_seed(0))
        assert q.is_cuda and m.is_cuda


def test_value_range_also_maps_binary_strings():
    s = EpisodeSource(DataConfig(dataset="binary_strings", value_range=(0.0, 1.0), corruption="flip:p=0.5"), "train", 0)
    b = s.batch(0)
    assert set(b.patterns.unique().tolist()) == {0.0, 1.0} and set(b.queries.unique().tolist()) == {0.0, 1.0}
