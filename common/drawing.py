"""Measures of a drawing image that training and editing both report (they may not import each other)."""
from __future__ import annotations

import torch


def ink_coverage(x: torch.Tensor) -> torch.Tensor:
    """Fraction of pixels darker than mid-grey per image ([N, 1, H, W] in [-1, 1], ink = -1 -> [N])."""
    return (x < 0).float().flatten(1).mean(1)
