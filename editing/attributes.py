"""Attributes computed from generated drawings (paper bright, ink dark; images in [-1, 1]).

They score latents for InterFaceGAN without a trained classifier, and measure whether an edit did
what it should: ink coverage (how much is drawn, overall or in the top / left half), the ink centroid
and the ink spread (how far the drawing reaches from its centre), all in fractions of the image so they
compare across sizes.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

__all__ = ["ink_weight", "ink_coverage", "ink_top", "ink_left", "centroid_x", "centroid_y", "spread", "ATTRIBUTES",
           "compute"]


def ink_weight(images: torch.Tensor) -> torch.Tensor:
    """[B, C, H, W] in [-1, 1] -> ink amount per pixel [B, H, W] in [0, 1] (1 = black)."""
    if images.ndim != 4:
        raise ValueError(f"images must be [B, C, H, W], got {tuple(images.shape)}")
    return ((1 - images.float().mean(1).clamp(-1, 1)) / 2)


def ink_coverage(images: torch.Tensor) -> np.ndarray:
    """Mean ink per pixel, (B,) in [0, 1]."""
    return ink_weight(images).mean((1, 2)).cpu().numpy().astype(np.float64)


def _centroid(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    m = ink_weight(images)
    h, w = m.shape[1:]
    ys = (torch.arange(h, dtype=m.dtype) + 0.5) / h
    xs = (torch.arange(w, dtype=m.dtype) + 0.5) / w
    mass = m.sum((1, 2)).clamp_min(1e-12)
    cx = (m.sum(1) * xs).sum(1) / mass
    cy = (m.sum(2) * ys).sum(1) / mass
    return m, cx, cy


def centroid_x(images: torch.Tensor) -> np.ndarray:
    """Ink centre of mass, horizontal, (B,) in [0, 1] of the width."""
    return _centroid(images)[1].cpu().numpy().astype(np.float64)


def centroid_y(images: torch.Tensor) -> np.ndarray:
    """Ink centre of mass, vertical, (B,) in [0, 1] of the height."""
    return _centroid(images)[2].cpu().numpy().astype(np.float64)


def spread(images: torch.Tensor) -> np.ndarray:
    """RMS distance of the ink from its centre of mass, (B,) in fractions of the image side."""
    m, cx, cy = _centroid(images)
    h, w = m.shape[1:]
    ys = ((torch.arange(h, dtype=m.dtype) + 0.5) / h)[None, :, None]
    xs = ((torch.arange(w, dtype=m.dtype) + 0.5) / w)[None, None, :]
    d2 = (xs - cx[:, None, None]) ** 2 + (ys - cy[:, None, None]) ** 2
    return torch.sqrt((m * d2).sum((1, 2)) / m.sum((1, 2)).clamp_min(1e-12)).cpu().numpy().astype(np.float64)


def ink_top(images: torch.Tensor) -> np.ndarray:
    """Mean ink per pixel of the upper half of the image, (B,) in [0, 1]."""
    m = ink_weight(images)
    return m[:, : m.shape[1] // 2].mean((1, 2)).cpu().numpy().astype(np.float64)


def ink_left(images: torch.Tensor) -> np.ndarray:
    """Mean ink per pixel of the left half of the image, (B,) in [0, 1]."""
    m = ink_weight(images)
    return m[:, :, : m.shape[2] // 2].mean((1, 2)).cpu().numpy().astype(np.float64)


ATTRIBUTES: dict[str, Callable[[torch.Tensor], np.ndarray]] = {
    "ink": ink_coverage, "ink_top": ink_top, "ink_left": ink_left, "centroid_x": centroid_x,
    "centroid_y": centroid_y, "spread": spread}


def compute(name: str, images: torch.Tensor) -> np.ndarray:
    if name not in ATTRIBUTES:
        raise KeyError(f"unknown attribute {name!r}; computed attributes: {', '.join(ATTRIBUTES)}")
    return ATTRIBUTES[name](images)
