"""Spatial-transformer crops (Kanerva++ App. A) against hand-computed crops."""

import pytest
import torch

from engramlab.errors import BadInput
from engramlab.nn.spatial_transformer import check_keys_inside, crop, squash_keys


def test_half_scale_keys_crop_the_four_quadrants_exactly():
    memory = torch.arange(64, dtype=torch.float32).reshape(1, 1, 8, 8)
    keys = torch.tensor([[[0.5, -0.5, -0.5], [0.5, 0.5, -0.5], [0.5, -0.5, 0.5], [0.5, 0.5, 0.5]]])
    out = crop(memory, keys, (4, 4))
    m = memory[0, 0]
    assert torch.allclose(out[0, 0, 0], m[:4, :4])  # x = -1/2 is the left half, y = -1/2 the top
    assert torch.allclose(out[0, 1, 0], m[:4, 4:])
    assert torch.allclose(out[0, 2, 0], m[4:, :4])
    assert torch.allclose(out[0, 3, 0], m[4:, 4:])


def test_unit_scale_centred_key_reads_the_whole_memory(gen):
    memory = torch.randn(2, 3, 6, 6, generator=gen)
    out = crop(memory, torch.tensor([1.0, 0.0, 0.0]).expand(2, 1, 3), (6, 6))
    assert torch.allclose(out[:, 0], memory, atol=1e-6)


def test_half_pixel_shift_averages_neighbouring_columns():
    memory = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
    # s=1/2 centred: output 2x2 samples at input coordinates ±0.25 = pixel indices 1 and 2 exactly;
    # shifting x by half a pixel (0.25 in normalised units) blends columns 1,2 and 2,3 by halves.
    out = crop(memory, torch.tensor([[[0.5, 0.25, 0.0]]]), (2, 2))
    m = memory[0, 0]
    expected = 0.5 * (m[1:3, 1:3] + m[1:3, 2:4])
    assert torch.allclose(out[0, 0, 0], expected)


def test_crop_is_differentiable_in_memory_and_keys(gen):
    memory = torch.randn(1, 1, 8, 8, generator=gen, requires_grad=True)
    keys = torch.tensor([[[0.4, 0.1, -0.2]]], requires_grad=True)
    crop(memory, keys, (4, 4)).sum().backward()
    assert memory.grad.abs().sum() > 0 and keys.grad.abs().sum() > 0


def test_keys_outside_the_memory_raise_bad_input():
    with pytest.raises(BadInput, match="outside the memory"):
        crop(torch.zeros(1, 1, 8, 8), torch.tensor([[[0.5, 0.8, 0.0]]]), (4, 4))
    with pytest.raises(BadInput, match="outside the memory"):
        check_keys_inside(torch.tensor([[-0.1, 0.0, 0.0]]))


def test_squashed_keys_always_lie_inside_the_memory(gen):
    check_keys_inside(squash_keys(torch.randn(1000, 3, generator=gen) * 10))
