"""InterFaceGAN (Shen, Gu, Tang and Zhou, CVPR 2020; TPAMI 2020): semantic boundaries as linear SVMs.

A binary attribute is assumed to be separated by a hyperplane n.x + b = 0 in latent space. Latents are
scored (by a classifier, a label file, or a computed image measure), only the `ratio` highest and
lowest scored ones are kept (the reference keeps 2 % at each end, where the labels are reliable), and a
linear SVM's unit normal n is the edit direction. Conditional manipulation edits along n with the
components along other boundaries projected out, so those attributes stay put.

Boundary files are `.npy` arrays of shape (1, D), as in the reference code.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from loguru import logger
from sklearn.svm import SVC

from common.atomic import atomic_write_bytes
from editing.linalg import as_matrix

__all__ = ["BoundaryFit", "fit_boundary", "train_boundary", "project_boundary", "interpolate", "edit",
           "save_boundary", "load_boundary"]


@dataclass(frozen=True)
class BoundaryFit:
    normal: np.ndarray        # (1, D), unit length, pointing to higher scores
    offset: float             # b of the unit-normal hyperplane n.x + b = 0
    train_accuracy: float
    val_accuracy: float       # on the held-out part of the kept extremes (nan when none held out)
    n_per_class: int


def _check_vector(v, name: str, dim: int | None = None) -> np.ndarray:
    """One direction as a finite (1, D) array; a 1-D vector is taken as that row."""
    a = np.asarray(v)
    a = as_matrix(a[None] if a.ndim == 1 else a, name, dim)
    if a.shape[0] != 1:
        raise ValueError(f"{name} must have shape (1, D), got {a.shape}")
    return a


def fit_boundary(latents, scores, ratio: float = 0.02, split_ratio: float = 0.7, C: float = 1.0,
                 seed: int = 0) -> BoundaryFit:
    """Linear SVM between the top and bottom `ratio` of latents sorted by score.

    latents (N, D); scores (N,), NaN scores (unscorable samples) are dropped. `split_ratio` of each
    extreme trains the SVM, the rest measures how separable the attribute is.
    """
    x = as_matrix(latents, "latents")
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if s.shape[0] != x.shape[0]:
        raise ValueError(f"scores must have one value per latent: {s.shape[0]} scores for {x.shape[0]} latents")
    if not 0 < ratio <= 0.5:
        raise ValueError(f"ratio must be in (0, 0.5] (the share kept at each end), got {ratio}")
    if not 0 < split_ratio <= 1:
        raise ValueError(f"split_ratio must be in (0, 1], got {split_ratio}")
    keep = np.isfinite(s)
    x, s = x[keep], s[keep]
    n_side = int(round(ratio * len(s)))
    if n_side < 2:
        raise ValueError(f"ratio={ratio} of {len(s)} scored latents keeps {n_side} per side; sample more "
                         f"latents or raise ratio (at least 2 per side are needed)")
    order = np.argsort(-s, kind="stable")
    pos, neg = x[order[:n_side]], x[order[-n_side:]]
    if s[order[n_side - 1]] <= s[order[-n_side]]:
        raise ValueError("the top and bottom score groups overlap (scores are constant over the kept "
                         "extremes); the attribute does not vary in these samples")

    rng = np.random.default_rng(seed)
    n_train = max(1, int(round(split_ratio * n_side)))
    pos, neg = pos[rng.permutation(n_side)], neg[rng.permutation(n_side)]
    x_train = np.concatenate([pos[:n_train], neg[:n_train]])
    y_train = np.concatenate([np.ones(n_train), np.zeros(n_train)])
    # libsvm's linear SVC leaves the intercept unpenalised (liblinear's LinearSVC does not), which
    # matters here because W latents are far from the origin
    svm = SVC(kernel="linear", C=C).fit(x_train, y_train)
    w = svm.coef_.reshape(1, -1)
    norm = float(np.linalg.norm(w))
    if norm == 0:
        raise ValueError("the SVM found no separating direction (all coefficients are zero)")
    train_acc = float(svm.score(x_train, y_train))
    if n_train < n_side:
        x_val = np.concatenate([pos[n_train:], neg[n_train:]])
        y_val = np.concatenate([np.ones(n_side - n_train), np.zeros(n_side - n_train)])
        val_acc = float(svm.score(x_val, y_val))
    else:
        val_acc = float("nan")
    logger.info(f"InterFaceGAN boundary: {n_side} latents per side of {len(s)}, D={x.shape[1]}, "
                f"train accuracy {train_acc:.3f}, validation accuracy {val_acc:.3f}")
    return BoundaryFit(normal=(w / norm).astype(np.float64), offset=float(svm.intercept_[0]) / norm,
                       train_accuracy=train_acc, val_accuracy=val_acc, n_per_class=n_side)


def train_boundary(latents, scores, ratio: float = 0.02, **kwargs) -> np.ndarray:
    """Unit normal (1, D) of the SVM boundary, pointing towards higher scores (see `fit_boundary`)."""
    return fit_boundary(latents, scores, ratio=ratio, **kwargs).normal


def project_boundary(primary, *conditions) -> np.ndarray:
    """Primary boundary with every condition boundary's component removed, re-normalised.

    Editing along the result changes the primary attribute while the signed distance to each condition
    hyperplane (hence that attribute, to first order) stays constant. Any number of conditions.
    """
    p = _check_vector(primary, "primary")
    if not conditions:
        return p / np.linalg.norm(p)
    c = np.concatenate([_check_vector(v, f"conditions[{i}]", p.shape[1]) for i, v in enumerate(conditions)])
    # orthonormal basis of the conditions' span; rank-deficient conditions contribute nothing extra
    u, sv, _ = np.linalg.svd(c.T, full_matrices=False)
    basis = u[:, sv > sv[0] * 1e-10]
    out = p - (p @ basis) @ basis.T
    norm = float(np.linalg.norm(out))
    if norm < 1e-8 * float(np.linalg.norm(p)):
        raise ValueError("the primary boundary lies in the span of the condition boundaries; "
                         "nothing is left to edit")
    return out / norm


def edit(latents, boundary, distance, layers: tuple[int, int] | None = None) -> np.ndarray:
    """Relative edit in W or W+: latents + distance * n.

    latents (N, D) or W+ (N, L, D); `layers` = (start, stop) restricts a W+ edit to those layers.
    """
    x = np.asarray(latents, dtype=np.float64)
    n = _check_vector(boundary, "boundary", x.shape[-1])[0]
    out = x.copy()
    if x.ndim == 2:
        if layers is not None:
            raise ValueError("layers applies to W+ latents (N, L, D) only")
        return out + distance * n
    if x.ndim != 3:
        raise ValueError(f"latents must be (N, D) or W+ (N, L, D), got shape {x.shape}")
    start, stop = layers if layers is not None else (0, x.shape[1])
    if not 0 <= start < stop <= x.shape[1]:
        raise ValueError(f"layers must satisfy 0 <= start < stop <= {x.shape[1]}, got {layers}")
    out[:, start:stop] += distance * n
    return out


def interpolate(latent, boundary, start: float = -3.0, end: float = 3.0, steps: int = 7,
                space: str = "w") -> np.ndarray:
    """Codes along the boundary normal for one latent, shape (steps, *latent_shape).

    space 'z': the codes sit at signed distances start..end from the hyperplane through the origin
    (Z is a Gaussian, so absolute distances mean the same for every sample); 'w' / 'wplus': the codes
    are moved by start..end from where they are (W has no such calibration).
    """
    x = np.asarray(latent, dtype=np.float64)
    if x.ndim >= 2 and x.shape[0] == 1:
        x = x[0]
    n = _check_vector(boundary, "boundary", x.shape[-1])[0]
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    dist = np.linspace(start, end, steps)
    if space == "z":
        if x.ndim != 1:
            raise ValueError(f"a Z latent must be (D,) or (1, D), got {np.shape(latent)}")
        dist = dist - float(x @ n)
    elif space not in ("w", "wplus"):
        raise ValueError(f"space must be 'z', 'w' or 'wplus', got {space!r}")
    return x[None] + dist.reshape((-1,) + (1,) * x.ndim) * n


def save_boundary(path: str | Path, normal) -> Path:
    """Write a (1, D) boundary as .npy, atomically."""
    n = _check_vector(normal, "normal").astype(np.float32)
    buf = io.BytesIO()
    np.save(buf, n)
    return atomic_write_bytes(path, buf.getvalue())


def load_boundary(path: str | Path, dim: int | None = None) -> np.ndarray:
    """Read a (1, D) boundary .npy (also accepts (D,)), checking the dimension against `dim`."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: boundary file not found")
    a = np.load(path, allow_pickle=False)
    try:
        n = _check_vector(a, f"{path}", dim)
    except ValueError as e:
        raise ValueError(f"{e} (a boundary file holds one unit normal, shape (1, D))") from None
    return n / np.linalg.norm(n)
