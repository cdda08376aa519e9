"""The one place editing touches a generator: load it with models.load, sample latents, synthesise.

Images always use the generator's fixed noise buffers (Bundle.synthesize), so an edit's before and
after differ only by the latent change.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

import models

__all__ = ["load_generator", "sample_latents", "w_average", "to_wplus", "synthesize", "w_to_image_fn"]


def load_generator(path: str | Path, device: str | torch.device | None = None) -> models.Bundle:
    """models.load in float32 (directions and Jacobians need full precision), checked to hold a generator."""
    bundle = models.load(path, device=device or "cpu", fp16=False)
    if bundle.generator is None:
        raise models.CheckpointError(f"{path}: this checkpoint has no generator; editing needs a StyleGAN2 "
                                     "generator (rosinality, pSp or project format)")
    return bundle


def w_average(bundle: models.Bundle) -> torch.Tensor:
    """The W centre (style_dim,): the mean of latent_avg's layers (they are equal for a plain StyleGAN2)."""
    return bundle.latent_avg.float().mean(0).cpu()


@torch.no_grad()
def sample_latents(bundle: models.Bundle, n: int, seed: int = 0, batch: int = 512, truncation: float = 1.0,
                   progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(z, w), each (n, style_dim) float32: z ~ N(0, I) from `seed`, w = mapping(z) (truncated towards the
    W average when truncation < 1)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    g = bundle.generator
    z = torch.randn(n, g.style_dim, generator=torch.Generator().manual_seed(seed))
    ws = []
    for start in tqdm(range(0, n, batch), desc="mapping z -> w", unit="batch", disable=not progress):
        ws.append(g.style(z[start:start + batch].to(bundle.device, bundle.dtype)).float().cpu())
    w = torch.cat(ws)
    if truncation != 1.0:
        avg = w_average(bundle)
        w = avg + truncation * (w - avg)
    return z.numpy(), w.numpy()


def to_wplus(bundle: models.Bundle, w) -> np.ndarray:
    """(N, D) W -> (N, n_latent, D) W+; W+ input passes through unchanged (shape checked)."""
    x = np.asarray(w, dtype=np.float32)
    n_latent, d = bundle.n_latent, bundle.style_dim
    if x.ndim == 2 and x.shape[1] == d:
        return np.repeat(x[:, None], n_latent, axis=1)
    if x.ndim == 3 and x.shape[1:] == (n_latent, d):
        return x
    raise ValueError(f"latents must be W (N, {d}) or W+ (N, {n_latent}, {d}), got shape {x.shape}")


@torch.no_grad()
def synthesize(bundle: models.Bundle, latents, batch: int = 32, progress: bool = False, space: str = "w"
               ) -> torch.Tensor:
    """Images [N, C, H, W] (float32, CPU) for W (N, D), W+ (N, L, D) or, with space='z', Z (N, D) latents."""
    x = np.asarray(latents, dtype=np.float32)
    if space == "z":
        if x.ndim != 2 or x.shape[1] != bundle.style_dim:
            raise ValueError(f"Z latents must be (N, {bundle.style_dim}), got shape {x.shape}")
        x = np.concatenate([bundle.generator.style(torch.from_numpy(x[s:s + 512]).to(bundle.device, bundle.dtype))
                            .float().cpu().numpy() for s in range(0, len(x), 512)])
    elif space != "w":
        raise ValueError(f"space must be 'w' (W or W+) or 'z', got {space!r}")
    wp = torch.from_numpy(to_wplus(bundle, x))
    out = []
    for start in tqdm(range(0, len(wp), batch), desc="synthesis", unit="batch", disable=not progress):
        out.append(bundle.synthesize(wp[start:start + batch]).float().cpu())
    return torch.cat(out)


def w_to_image_fn(bundle: models.Bundle) -> Callable[[torch.Tensor], torch.Tensor]:
    """A differentiable map W (B, D) -> images (B, C, H, W), W broadcast to every layer, fixed noise."""

    def fn(w: torch.Tensor) -> torch.Tensor:
        wp = w.to(bundle.device, bundle.dtype).unsqueeze(1).repeat(1, bundle.n_latent, 1)
        return bundle.synthesize(wp).float()

    return fn
