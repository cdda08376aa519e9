"""GAN inversion by optimisation: the W+ code whose image matches a target (for embedding a structured
data set into latent space, as the thesis embeds BU-3DFE with an encoder). Used when the checkpoint has
no encoder, or when the targets are not sketches."""
from __future__ import annotations

import numpy as np
import torch
from tqdm import tqdm

import models
from editing.sampling import to_wplus

__all__ = ["invert"]


def invert(bundle: models.Bundle, targets: torch.Tensor, w_init, steps: int = 200, lr: float = 0.05,
           reg: float = 1e-3, progress: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """W+ codes (N, L, D) minimising mean((G(w) - target)^2) + reg * mean((w - w_init)^2) by Adam.

    targets [N, C, H, W] in [-1, 1] at the generator's resolution; w_init W (N, D) or W+ (N, L, D).
    Returns (codes, final per-image pixel MSE (N,)).
    """
    g = bundle.generator
    expected = (g.img_channels, g.size, g.size)
    if targets.ndim != 4 or tuple(targets.shape[1:]) != expected:
        raise ValueError(f"targets must be [N, {expected[0]}, {expected[1]}, {expected[2]}], "
                         f"got {tuple(targets.shape)}")
    start = torch.from_numpy(to_wplus(bundle, w_init)).to(bundle.device)
    if start.shape[0] != targets.shape[0]:
        raise ValueError(f"{start.shape[0]} initial codes for {targets.shape[0]} targets")
    target = targets.to(bundle.device, torch.float32)
    w = start.clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr)
    bar = tqdm(range(steps), desc="inversion", unit="step", disable=not progress)
    for _ in bar:
        mse = ((bundle.synthesize(w).float() - target) ** 2).mean((1, 2, 3))
        loss = mse.mean() + reg * ((w - start) ** 2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        bar.set_postfix(mse=f"{mse.detach().mean().item():.4f}")
    with torch.no_grad():
        mse = ((bundle.synthesize(w).float() - target) ** 2).mean((1, 2, 3))
    return w.detach().cpu().numpy(), mse.cpu().numpy()
