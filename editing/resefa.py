"""Region-based directions (after ReSeFa: Zhu, Shen, Xu, Zhao and Chen, ECCV 2022).

For a generator image x(w) and a region of interest, the Jacobian J = dx/dw splits into the rows of
foreground pixels (J_f) and background pixels (J_b). A direction v changes the foreground by
v^T A_f v and the background by v^T A_b v, with the Gram matrices A = J^T J (summed over a few
latent samples, so the directions hold across the latent space). Directions that move the region and
leave the rest alone maximise the ratio, i.e. solve the generalized symmetric eigenproblem

    A_f v = lambda (A_b + eps I) v,      eps = reg * trace(A_b) / D

where eps keeps the problem well-posed when A_b is (near) singular. The Jacobians are forward-mode
(torch.func.jvp): one batched forward pass pushes a chunk of basis tangents through the network.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import scipy.linalg
import torch
from loguru import logger
from torch.func import jvp
from tqdm import tqdm

from editing.linalg import orient_rows, unit_rows

__all__ = ["region_mask", "jacobian", "gram_matrices", "factorize", "find_directions"]


def region_mask(height: int, width: int, rect: tuple[float, float, float, float] | None = None,
                mask: np.ndarray | None = None) -> np.ndarray:
    """Boolean (H, W) foreground: a rectangle (x0, y0, x1, y1) in fractions of the image, or a mask.

    A mask of another size is resized (nearest); non-zero pixels are foreground.
    """
    if (rect is None) == (mask is None):
        raise ValueError("give exactly one of rect=(x0, y0, x1, y1) or mask")
    if rect is not None:
        x0, y0, x1, y1 = (float(v) for v in rect)
        if not (0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1):
            raise ValueError(f"rect must satisfy 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, got {rect}")
        out = np.zeros((height, width), dtype=bool)
        out[int(round(y0 * height)):max(int(round(y1 * height)), int(round(y0 * height)) + 1),
            int(round(x0 * width)):max(int(round(x1 * width)), int(round(x0 * width)) + 1)] = True
    else:
        m = np.asarray(mask)
        if m.ndim == 3:
            m = m.max(axis=-1)
        if m.ndim != 2:
            raise ValueError(f"mask must be 2-D (H, W) or (H, W, C), got shape {np.shape(mask)}")
        if m.shape != (height, width):
            yi = (np.arange(height) * m.shape[0] // height)
            xi = (np.arange(width) * m.shape[1] // width)
            m = m[yi][:, xi]
        out = m != 0
    if out.all() or not out.any():
        raise ValueError("the region must contain some pixels and leave some pixels outside it")
    return out


def jacobian(fn: Callable[[torch.Tensor], torch.Tensor], w: torch.Tensor, chunk: int = 32) -> torch.Tensor:
    """J = d fn(w) / dw, shape (*out_shape, D), by forward mode in chunks of `chunk` tangents.

    fn maps a batch of latents (B, D) to a batch of outputs (B, ...) with samples independent of each
    other (a generator with fixed noise), so one call with B copies of w and B basis tangents gives B
    columns of J at once.
    """
    if w.ndim != 1:
        raise ValueError(f"w must be one latent (D,), got shape {tuple(w.shape)}")
    d = w.shape[0]
    eye = torch.eye(d, dtype=w.dtype, device=w.device)
    cols = []
    for start in range(0, d, chunk):
        tangents = eye[start:start + chunk]
        primal = w.unsqueeze(0).repeat(tangents.shape[0], 1)
        _, t = jvp(fn, (primal,), (tangents,))
        cols.append(t.reshape(tangents.shape[0], -1))
    j = torch.cat(cols)  # (D, P): row i is J e_i
    with torch.no_grad():
        out_shape = fn(w.unsqueeze(0)).shape[1:]
    return j.T.reshape(*out_shape, d)


def gram_matrices(fn: Callable[[torch.Tensor], torch.Tensor], latents, mask: np.ndarray, chunk: int = 32,
                  progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(A_f, A_b) = sums over latents of J_f^T J_f and J_b^T J_b; fn(B, D) -> images (B, C, H, W)."""
    lat = torch.as_tensor(np.asarray(latents), dtype=torch.float32)
    if lat.ndim != 2:
        raise ValueError(f"latents must be (N, D), got shape {tuple(lat.shape)}")
    m = torch.as_tensor(np.asarray(mask, dtype=bool))
    d = lat.shape[1]
    a_f = np.zeros((d, d))
    a_b = np.zeros((d, d))
    for w in tqdm(lat, desc="ReSeFa Jacobians", unit="latent", disable=not progress):
        j = jacobian(fn, w, chunk=chunk)
        if j.ndim != 4 or tuple(j.shape[1:3]) != tuple(m.shape):
            raise ValueError(f"fn must return images (B, C, H, W) with H, W = mask shape {tuple(m.shape)}; "
                             f"the Jacobian has shape {tuple(j.shape)}")
        jf = j[:, m].reshape(-1, d).double()
        jb = j[:, ~m].reshape(-1, d).double()
        a_f += (jf.T @ jf).numpy()
        a_b += (jb.T @ jb).numpy()
    return a_f, a_b


def factorize(a_fg: np.ndarray, a_bg: np.ndarray, reg: float = 1e-3, n_directions: int | None = None
              ) -> tuple[np.ndarray, np.ndarray]:
    """Generalized eigenvectors of (A_f, A_b + eps I), by decreasing foreground/background ratio.

    Returns (directions (K, D) unit rows, ratios (K,)).
    """
    a_f = np.asarray(a_fg, dtype=np.float64)
    a_b = np.asarray(a_bg, dtype=np.float64)
    d = a_f.shape[0]
    if a_f.shape != (d, d) or a_b.shape != (d, d):
        raise ValueError(f"A_fg and A_bg must be square and equal in shape, got {a_f.shape} and {a_b.shape}")
    if reg <= 0:
        raise ValueError(f"reg must be > 0 (it keeps A_bg invertible), got {reg}")
    a_f = (a_f + a_f.T) / 2
    a_b = (a_b + a_b.T) / 2
    eps = reg * max(np.trace(a_b), np.trace(a_f), 1e-300) / d
    values, vectors = scipy.linalg.eigh(a_f, a_b + eps * np.eye(d))
    order = np.argsort(values)[::-1][:n_directions]
    directions = orient_rows(unit_rows(vectors[:, order].T))
    return directions, values[order]


def find_directions(fn: Callable[[torch.Tensor], torch.Tensor], latents, mask: np.ndarray, reg: float = 1e-3,
                    n_directions: int | None = None, chunk: int = 32, progress: bool = True
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Region-local directions at the given latents; see the module docstring."""
    a_f, a_b = gram_matrices(fn, latents, mask, chunk=chunk, progress=progress)
    directions, ratios = factorize(a_f, a_b, reg=reg, n_directions=n_directions)
    logger.info(f"ReSeFa: foreground {int(np.sum(mask))} px, top foreground/background ratios "
                f"{np.round(ratios[:5], 3).tolist()}")
    return directions, ratios
