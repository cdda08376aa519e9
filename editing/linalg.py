"""Small linear-algebra conventions every direction finder shares.

Eigen- and singular vectors have an arbitrary sign; `orient_rows` fixes it (largest-magnitude
entry positive) so that two runs on the same data write the same directions file and the same grid.
"""
from __future__ import annotations

import numpy as np


def as_matrix(x, name: str, cols: int | None = None) -> np.ndarray:
    """A finite float64 2-D array, with a message naming the argument when it is not."""
    a = np.asarray(x, dtype=np.float64)
    if a.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (N, D), got shape {a.shape}")
    if cols is not None and a.shape[1] != cols:
        raise ValueError(f"{name} must have {cols} columns, got shape {a.shape}")
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} holds NaN or infinite values")
    return a


def unit_rows(a: np.ndarray, name: str = "directions") -> np.ndarray:
    """Rows scaled to unit Euclidean length; a zero row is an error (it has no direction)."""
    norms = np.linalg.norm(a, axis=1, keepdims=True)
    if np.any(norms == 0):
        raise ValueError(f"{name}: row {int(np.argmin(norms[:, 0]))} is zero and has no direction")
    return a / norms


def orient_rows(a: np.ndarray) -> np.ndarray:
    """Flip each row's sign so its largest-magnitude entry is positive (a reproducible sign convention)."""
    idx = np.argmax(np.abs(a), axis=1)
    signs = np.sign(a[np.arange(a.shape[0]), idx])
    signs[signs == 0] = 1.0
    return a * signs[:, None]
