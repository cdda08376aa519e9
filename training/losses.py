"""StyleGAN2 losses: non-saturating logistic GAN loss, lazy R1, path-length regularisation.

Karras et al. 2020, sections 2 and 3.2; the formulas are the paper's.
"""
from __future__ import annotations

import math

import torch
from torch import autograd
from torch.nn import functional as F


def d_logistic_loss(real_pred: torch.Tensor, fake_pred: torch.Tensor) -> torch.Tensor:
    """E[softplus(-D(x))] + E[softplus(D(G(z)))]."""
    return F.softplus(-real_pred).mean() + F.softplus(fake_pred).mean()


def g_nonsaturating_loss(fake_pred: torch.Tensor) -> torch.Tensor:
    """E[softplus(-D(G(z)))]."""
    return F.softplus(-fake_pred).mean()


def d_r1_penalty(real_pred: torch.Tensor, real_img: torch.Tensor) -> torch.Tensor:
    """E[||grad_x D(x)||^2] on real images (real_img must require grad); weighted gamma/2 by the caller."""
    (grad,) = autograd.grad(real_pred.sum(), real_img, create_graph=True)
    return grad.float().pow(2).flatten(1).sum(1).mean()


def g_path_length_penalty(fake_img: torch.Tensor, latents: torch.Tensor, mean_path_length: torch.Tensor,
                          decay: float = 0.01) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(penalty, updated running mean a, mean path length) for ||J_w^T y||, y ~ N(0, I) / sqrt(H W).

    The penalty (||J_w^T y|| - a)^2 asks a fixed-size step in W to change the image by a fixed amount,
    which makes the mapping smoother and the latent space easier to invert (useful to the encoder).
    """
    noise = torch.randn_like(fake_img) / math.sqrt(fake_img.shape[2] * fake_img.shape[3])
    (grad,) = autograd.grad((fake_img * noise).sum(), latents, create_graph=True)
    path_lengths = grad.float().pow(2).sum(2).mean(1).sqrt()
    mean = mean_path_length + decay * (path_lengths.mean().detach() - mean_path_length)
    return (path_lengths - mean).pow(2).mean(), mean, path_lengths.mean().detach()
