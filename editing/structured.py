"""A structured drawing data set in latent space, for the tensor models of Papers I/II.

The thesis embeds a structured face database (persons x expressions x intensities) into latent space.
Drawings have no expressions, so this builds the same structure from controlled image changes: each
"person" is a sketch (or a generated drawing), each "expression" an image transform (thicker strokes, a
shift to the right, a smaller drawing), each "intensity" a stronger version of it; the transformed
images are embedded by the checkpoint's encoder, or by inversion when it has none. Level 0 is the
untouched drawing for every transform.
"""
from __future__ import annotations

import numpy as np
import torch
from loguru import logger
from torch.nn import functional as F

import models
from editing.invert import invert
from editing.sampling import sample_latents, synthesize, to_wplus

__all__ = ["TRANSFORMS", "transform", "drawing_transform_tensor"]

TRANSFORMS = ("thicker", "shift_right", "smaller")


def transform(images: torch.Tensor, name: str, amount: float) -> torch.Tensor:
    """One transform of drawings [B, C, H, W] in [-1, 1] (paper = 1) at amount in [0, 1]."""
    if name == "thicker":
        ink = (1 - images) / 2
        grown = F.max_pool2d(ink, 3, stride=1, padding=1)
        return 1 - 2 * ((1 - amount) * ink + amount * grown)
    size = images.shape[-1]
    theta = torch.zeros(images.shape[0], 2, 3)
    if name == "shift_right":
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0
        theta[:, 0, 2] = -0.25 * amount            # sampling grid moves left: the drawing moves right
    elif name == "smaller":
        theta[:, 0, 0] = theta[:, 1, 1] = 1.0 / (1.0 - 0.35 * amount)
    else:
        raise ValueError(f"unknown transform {name!r}; transforms: {', '.join(TRANSFORMS)}")
    grid = F.affine_grid(theta, [images.shape[0], images.shape[1], size, size], align_corners=False)
    # paper outside the page: sample 1 - x (ink) with zero padding, then flip back
    return 1 - F.grid_sample(1 - images, grid, align_corners=False, padding_mode="zeros")


def drawing_transform_tensor(bundle: models.Bundle, n_persons: int = 6, levels: int = 3, steps: int = 150,
                             seed: int = 0, truncation: float = 0.7, sketches: torch.Tensor | None = None
                             ) -> tuple[np.ndarray, list[str]]:
    """W+ latents (persons, transforms, levels + 1, n_latent, style_dim) and the mode names.

    With `sketches` ([P, 1, S, S] in [0, 1], paper = 1) and a checkpoint with an encoder, the persons are
    those sketches and every transformed sketch is embedded by the encoder (as the thesis embeds its
    database with e4e); otherwise persons are sampled drawings and the transformed drawings are embedded
    by inversion (`steps` Adam steps each).
    """
    n_t = len(TRANSFORMS)
    if sketches is not None:
        if bundle.encoder is None:
            raise ValueError("sketches need a checkpoint with an encoder; without one, leave sketches out")
        n_persons = sketches.shape[0]
        batch = [sketches] + [(transform(sketches * 2 - 1, name, level / levels) + 1) / 2
                              for name in TRANSFORMS for level in range(1, levels + 1)]
        with torch.no_grad():
            codes = bundle.encode(torch.cat(batch)).float().cpu().numpy()
        codes = codes.reshape(1 + n_t * levels, n_persons, *codes.shape[1:])
        out = np.empty((n_persons, n_t, levels + 1) + codes.shape[2:], dtype=np.float32)
        out[:, :, 0] = codes[0][:, None]
        out[:, :, 1:] = codes[1:].reshape(n_t, levels, n_persons, *codes.shape[2:]).transpose(2, 0, 1, 3, 4)
        logger.info(f"structured sketches: {n_persons} persons x {n_t} transforms x {levels + 1} levels, encoded")
        return out, ["person", "expression", "intensity"]
    _, w = sample_latents(bundle, n_persons, seed=seed, truncation=truncation, progress=False)
    base = synthesize(bundle, w)
    wp = to_wplus(bundle, w)
    targets = [transform(base, name, level / levels) for name in TRANSFORMS for level in range(1, levels + 1)]
    codes, mse = invert(bundle, torch.cat(targets), np.concatenate([wp] * len(targets)), steps=steps)
    codes = codes.reshape(n_t, levels, n_persons, *wp.shape[1:])
    out = np.empty((n_persons, n_t, levels + 1) + wp.shape[1:], dtype=np.float32)
    out[:, :, 0] = wp[:, None]
    out[:, :, 1:] = codes.transpose(2, 0, 1, 3, 4)
    logger.info(f"structured drawings: {n_persons} persons x {n_t} transforms x {levels + 1} levels, "
                f"inversion MSE mean {float(mse.mean()):.4f} (max {float(mse.max()):.4f})")
    return out, ["person", "expression", "intensity"]
