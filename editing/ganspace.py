"""GANSpace (Härkönen, Hertzmann, Lehtinen and Paris, NeurIPS 2020): PCA of sampled W.

Principal components of mapped latents w = M(z) are interpretable edit directions; an edit moves
w by sigma standard deviations of one component, and applying it only to a range of W+ layers
(the paper's "layer-wise edits", e.g. 0-3 for pose, 5-8 for details) localises its effect.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from loguru import logger
from sklearn.decomposition import PCA, IncrementalPCA

from common.atomic import atomic_savez
from editing.linalg import as_matrix, orient_rows

__all__ = ["GanspaceModel", "fit", "fit_model", "edit"]


@dataclass(frozen=True)
class GanspaceModel:
    components: np.ndarray            # (K, D) unit rows, by decreasing variance
    stds: np.ndarray                  # (K,) standard deviation of W along each component
    mean: np.ndarray                  # (D,) sample mean of W
    explained_variance_ratio: np.ndarray   # (K,)

    def save(self, path: str | Path, **extra) -> Path:
        """Write an .npz (components, stds, mean, explained_variance_ratio, plus `extra` arrays)."""
        return atomic_savez(path, components=self.components.astype(np.float32), stds=self.stds.astype(np.float32),
                            mean=self.mean.astype(np.float32),
                            explained_variance_ratio=self.explained_variance_ratio.astype(np.float32), **extra)

    @classmethod
    def load(cls, path: str | Path) -> "GanspaceModel":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: GANSpace .npz not found")
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("components", "stds", "mean", "explained_variance_ratio") if k not in z]
            if missing:
                raise ValueError(f"{path}: not a GANSpace directions file, missing arrays {missing} "
                                 f"(found {sorted(z.files)})")
            return cls(*(z[k].astype(np.float64) for k in ("components", "stds", "mean",
                                                           "explained_variance_ratio")))


def fit_model(latents, n_components: int, incremental: bool = False, batch_size: int | None = None
              ) -> GanspaceModel:
    """PCA of latents (N, D); `incremental` uses IncrementalPCA in batches (for N too large for memory)."""
    x = as_matrix(latents, "latents")
    n, d = x.shape
    if not 1 <= n_components <= min(n, d):
        raise ValueError(f"n_components must be in [1, min(N, D) = {min(n, d)}], got {n_components}")
    if incremental:
        batch = batch_size or max(n_components, 5 * d)
        if batch < n_components:
            raise ValueError(f"batch_size {batch} must be >= n_components {n_components}")
        pca = IncrementalPCA(n_components=n_components, batch_size=batch).fit(x)
    else:
        pca = PCA(n_components=n_components, svd_solver="full").fit(x)
    comps = orient_rows(pca.components_.astype(np.float64))
    comps /= np.linalg.norm(comps, axis=1, keepdims=True)
    stds = np.sqrt(np.maximum(pca.explained_variance_, 0.0))
    logger.info(f"GANSpace: {n} latents, D={d}, first {min(5, n_components)} explained variance ratios "
                f"{np.round(pca.explained_variance_ratio_[:5], 4).tolist()}")
    return GanspaceModel(comps, stds, pca.mean_.astype(np.float64), pca.explained_variance_ratio_.copy())


def fit(latents, n_components: int, incremental: bool = False, batch_size: int | None = None
        ) -> tuple[np.ndarray, np.ndarray]:
    """(components (K, D) unit rows, stds (K,)) of the PCA of latents (N, D)."""
    m = fit_model(latents, n_components, incremental=incremental, batch_size=batch_size)
    return m.components, m.stds


def edit(wplus, component, sigma: float, std: float = 1.0, layers: tuple[int, int] | None = None
         ) -> np.ndarray:
    """W+ (N, L, D) moved by sigma * std along `component` (D,) in layers [start, stop) (all if None)."""
    x = np.asarray(wplus, dtype=np.float64)
    if x.ndim != 3:
        raise ValueError(f"wplus must be (N, L, D), got shape {x.shape}")
    v = np.asarray(component, dtype=np.float64).reshape(-1)
    if v.shape[0] != x.shape[2]:
        raise ValueError(f"component has {v.shape[0]} entries, W+ has style_dim {x.shape[2]}")
    start, stop = layers if layers is not None else (0, x.shape[1])
    if not 0 <= start < stop <= x.shape[1]:
        raise ValueError(f"layers must satisfy 0 <= start < stop <= {x.shape[1]}, got {layers}")
    out = x.copy()
    out[:, start:stop] += sigma * std * v
    return out
