"""DiffAugment ops move and mask content as specified and pass gradients."""
from __future__ import annotations

import pytest
import torch

from training.augment import diff_augment, parse_policy, rand_cutout, rand_translation


def test_translation_shifts_a_planted_pixel_within_the_ratio():
    x = torch.zeros(64, 1, 32, 32)
    x[:, :, 16, 16] = 1.0
    y = rand_translation(x, ratio=0.125)
    assert torch.equal(y.sum(dim=(1, 2, 3)), torch.ones(64))            # moved, never lost or doubled
    pos = y[:, 0].flatten(1).argmax(1)
    dy, dx = pos // 32 - 16, pos % 32 - 16
    assert dy.abs().max() <= 4 and dx.abs().max() <= 4 and (dy != 0).any() and (dx != 0).any()


def test_cutout_zeroes_one_square_of_the_given_size():
    y = rand_cutout(torch.ones(16, 1, 32, 32), ratio=0.5)
    holes = (y == 0).flatten(1).sum(1)
    assert holes.max() == 256 and holes.min() > 0                       # 16x16 inside, clipped at borders


def test_policy_is_differentiable_and_validated():
    x = torch.randn(4, 3, 16, 16, requires_grad=True)
    diff_augment(x, parse_policy("color,translation,cutout")).sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="rotate"):
        parse_policy("translation,rotate")
