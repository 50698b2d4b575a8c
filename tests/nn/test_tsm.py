"""Temporal shift (Lin et al. 2019) and the TSM-ResNet18 encoder."""

import pytest
import torch

from engramlab.errors import BadInput
from engramlab.nn.tsm import TSMResNet18, temporal_shift


def test_temporal_shift_moves_one_eighth_forward_and_one_eighth_backward():
    b, t, c = 2, 4, 16
    x = torch.arange(t, dtype=torch.float32).reshape(1, t, 1, 1, 1).expand(b, t, c, 3, 3).contiguous()
    out = temporal_shift(x.reshape(b * t, c, 3, 3), t).reshape(b, t, c, 3, 3)
    frame = out[0, :, :, 0, 0]  # (T, C): value = source frame index
    assert torch.equal(frame[:, :2], torch.tensor([[0.0], [0.0], [1.0], [2.0]]).expand(t, 2))  # t <- t-1
    assert torch.equal(frame[:, 2:4], torch.tensor([[1.0], [2.0], [3.0], [0.0]]).expand(t, 2))  # t <- t+1
    assert torch.equal(frame[:, 4:], torch.arange(t, dtype=torch.float32)[:, None].expand(t, 12))


def test_temporal_shift_keeps_episodes_apart(gen):
    x = torch.randn(2 * 3, 8, 2, 2, generator=gen)
    out = temporal_shift(x, 3).reshape(2, 3, 8, 2, 2)
    assert torch.equal(out[1, 0, 0], torch.zeros(2, 2))  # episode 1's first frame does not see episode 0


def test_shift_makes_frame_embeddings_depend_on_neighbours(gen):
    enc = TSMResNet18(in_channels=1, width=8, norm="group").eval()
    x = torch.rand(1, 3, 1, 8, 8, generator=gen)
    y = x.clone()
    y[0, 2] = torch.rand(1, 8, 8, generator=gen)
    e1, e2 = enc(x), enc(y)
    assert not torch.allclose(e1[0, 1], e2[0, 1])  # frame 1 sees frame 2
    no_shift = TSMResNet18(in_channels=1, width=8, norm="group", shift=False).eval()
    assert torch.allclose(no_shift(x)[0, 1], no_shift(y)[0, 1])


def test_encoder_output_shape(gen):
    enc = TSMResNet18(in_channels=1, width=8)
    assert enc(torch.rand(2, 4, 1, 28, 28, generator=gen)).shape == (2, 4, 64)


def test_encoder_rejects_single_frame_episodes_and_tiny_images():
    enc = TSMResNet18(in_channels=1, width=8)
    with pytest.raises(BadInput, match="episode length"):
        enc(torch.rand(2, 1, 1, 28, 28))
    with pytest.raises(BadInput, match="8×8"):
        enc(torch.rand(2, 3, 1, 4, 4))
