"""SeFa (Shen and Zhou, CVPR 2021, "Closed-Form Factorization of Latent Semantics in GANs").

Every StyleGAN2 layer first maps w through an affine "style" A_l (C_l x D). A direction n changes
the styles by A n, so the directions that change the styles most are the top eigenvectors of
A^T A, with A the layers' weights stacked. As in SeFa, each output channel's weight row is first
scaled to unit length, so channels with large weights do not dominate.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.linalg
from torch import nn

from editing.linalg import orient_rows

__all__ = ["factorize", "style_weights", "style_layers"]


def factorize(weights: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Eigen-decomposition of A^T A for A = stacked, row-normalised weights (list of (C_l, D) arrays).

    Returns (directions (D, D) unit rows, values (D,)), sorted by decreasing eigenvalue.
    """
    if len(weights) == 0:
        raise ValueError("factorize needs at least one (C_l, D) weight matrix")
    mats = []
    for i, w in enumerate(weights):
        a = np.asarray(w, dtype=np.float64)
        if a.ndim != 2:
            raise ValueError(f"weights[{i}] must be 2-D (C_l, D), got shape {a.shape}")
        if mats and a.shape[1] != mats[0].shape[1]:
            raise ValueError(f"weights[{i}] has D={a.shape[1]}, weights[0] has D={mats[0].shape[1]}")
        norms = np.linalg.norm(a, axis=1, keepdims=True)
        if np.any(norms == 0):
            raise ValueError(f"weights[{i}] has an all-zero row (channel {int(np.argmin(norms))})")
        mats.append(a / norms)
    a = np.concatenate(mats)
    values, vectors = scipy.linalg.eigh(a.T @ a)
    order = np.argsort(values)[::-1]
    return orient_rows(vectors[:, order].T), values[order]


def _modulations(generator: nn.Module, include_torgb: bool) -> list[tuple[int, nn.Module]]:
    """(W+ index, EqualLinear) for every style affine of a rosinality Generator.

    conv1 reads W+ index 0 and convs[i] index i + 1; to_rgb1 reads index 1 and to_rgbs[j] index 2j + 3.
    """
    for attr in ("conv1", "convs", "to_rgb1", "to_rgbs", "n_latent", "style_dim"):
        if not hasattr(generator, attr):
            raise TypeError(f"{type(generator).__name__} is not a StyleGAN2 Generator (no .{attr}); "
                            "load checkpoints with models.load")
    mods = [(0, generator.conv1.conv.modulation)]
    mods += [(i + 1, conv.conv.modulation) for i, conv in enumerate(generator.convs)]
    if include_torgb:
        mods.append((1, generator.to_rgb1.conv.modulation))
        mods += [(2 * j + 3, rgb.conv.modulation) for j, rgb in enumerate(generator.to_rgbs)]
    return mods


def style_layers(generator: nn.Module, include_torgb: bool = False) -> list[int]:
    """The W+ indices that have a style affine (all conv layers; ToRGB layers share theirs)."""
    return sorted({i for i, _ in _modulations(generator, include_torgb)})


def style_weights(generator: nn.Module, layers: Sequence[int] | None = None, include_torgb: bool = False
                  ) -> list[np.ndarray]:
    """The effective affine weights (C_l, D) of the layers reading the given W+ indices (all if None).

    Conv layers only by default, as SeFa and rosinality's closed_form_factorization do.
    """
    mods = _modulations(generator, include_torgb)
    available = sorted({i for i, _ in mods})
    wanted = available if layers is None else sorted(set(int(i) for i in layers))
    bad = [i for i in wanted if i not in available]
    if bad or not wanted:
        raise ValueError(f"layers {bad or list(layers)} have no style affine; W+ indices with one: {available}")
    out = []
    for idx, mod in mods:
        if idx in wanted:
            w = (mod.weight * mod.scale).detach().double().cpu().numpy()
            if w.shape[1] != generator.style_dim:
                raise ValueError(f"style affine of W+ layer {idx} has shape {w.shape}, expected "
                                 f"(C, {generator.style_dim})")
            out.append(w)
    return out
