"""DDIM sampling and inversion with read/write access to h-space (the UNet mid-block output).

h-space (Kwon et al., "Diffusion models already have a semantic latent space") is the bottleneck
feature map h_t of the noise predictor. A forward hook on `unet.mid_block` records h_t and replaces it
by h_t + delta_t during sampling; everything else about the sampler is diffusers' DDIMScheduler.

- eta = 0: deterministic DDIM; `ddim_invert` runs the same update backwards, so a real drawing can be
  mapped to x_T and sampled back (exact up to the eps(x_t) ~ eps(x_{t-1}) approximation of inversion).
- eta > 0 with `stored_noises`: DDPM-style stochastic sampling whose noise is drawn once and reused, so an
  edited run differs from the unedited one only by the edit.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import torch
from diffusers import DDIMScheduler, UNet2DModel
from tqdm import tqdm

HTransform = Callable[[torch.Tensor], torch.Tensor]


@contextmanager
def mid_block_hook(unet: UNet2DModel, transform: HTransform) -> Iterator[None]:
    """Route the mid-block output h through `transform` (h -> h') for the calls inside the block."""
    handle = unet.mid_block.register_forward_hook(lambda module, args, out: transform(out))
    try:
        yield
    finally:
        handle.remove()


@dataclass
class Edit:
    """h_t <- h_t + gamma * direction_t for the timesteps t in [t_min, t_max].

    direction: one h-shaped tensor for all t, a dict {t: tensor} (timesteps absent from the dict are not
    edited), each [C, H, W] or per-sample [B, C, H, W]. gamma: a float or a [B] tensor (one batch can
    hold several strengths, e.g. the columns of a grid).

    asymmetric (Kwon et al.'s asymmetric reverse process): the edited eps only enters the predicted x0,
    the direction-pointing term keeps the unedited eps. With the edited eps in both terms the two changes
    largely cancel (their Theorem 1), so edits are weak; asymmetric costs a second UNet call per edited step.
    """
    direction: torch.Tensor | dict[int, torch.Tensor]
    gamma: float | torch.Tensor = 1.0
    t_min: int = 0
    t_max: int = 10**9
    asymmetric: bool = True

    def applies(self, t: int) -> bool:
        listed = t in self.direction if isinstance(self.direction, dict) else True
        return listed and self.t_min <= t <= self.t_max

    def delta(self, t: int, h: torch.Tensor) -> torch.Tensor | None:
        if not self.applies(t):
            return None
        n = self.direction[t] if isinstance(self.direction, dict) else self.direction
        n = n.to(h)
        assert n.shape[-3:] == h.shape[-3:], f"direction {tuple(n.shape)} does not fit h {tuple(h.shape)}"
        g = torch.as_tensor(self.gamma, dtype=h.dtype, device=h.device)
        g = g.reshape(-1, 1, 1, 1) if g.ndim == 1 else g
        assert g.numel() in (1, h.shape[0]), f"gamma has {g.numel()} values for a batch of {h.shape[0]}"
        return g * n


@dataclass
class Trajectory:
    """One sampling run: the result x0, and per timestep the input x_t and the (edited) h_t."""
    x0: torch.Tensor
    timesteps: list[int]
    x_t: dict[int, torch.Tensor] = field(default_factory=dict)
    h: dict[int, torch.Tensor] = field(default_factory=dict)


def load_model(path: str | Path) -> tuple[UNet2DModel, DDIMScheduler]:
    """A diffusers folder (UNet2DModel.save_pretrained + a DDIM-compatible scheduler_config.json)."""
    path = Path(path)
    for name in ("config.json", "scheduler_config.json"):
        if not (path / name).is_file():
            raise FileNotFoundError(f"{path}: missing {name}; expected a folder written by "
                                    "UNet2DModel.save_pretrained and DDIMScheduler.save_pretrained "
                                    "(e.g. weights/ddpm_quickdraw)")
    # low_cpu_mem_usage needs `accelerate`, which the project does not install; asking for it only warns
    unet = UNet2DModel.from_pretrained(path, low_cpu_mem_usage=False).float().eval().requires_grad_(False)
    return unet, DDIMScheduler.from_pretrained(path)


def eps_and_h(unet: UNet2DModel, x: torch.Tensor, t: int, edit: Edit | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """One noise prediction at timestep t, with the (edited) h_t it used."""
    seen = {}

    def transform(h):
        d = edit.delta(t, h) if edit is not None else None
        seen["h"] = h if d is None else h + d
        return seen["h"]

    with mid_block_hook(unet, transform):
        eps = unet(x, t).sample
    return eps, seen["h"]


def stored_noises(shape: tuple[int, ...], steps: int, seed: int) -> list[torch.Tensor]:
    """The per-step noises of one stochastic run, drawn once so they can be replayed under edits."""
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(shape, generator=g) for _ in range(steps)]


@torch.no_grad()
def sample(unet: UNet2DModel, scheduler: DDIMScheduler, x_T: torch.Tensor, steps: int, edit: Edit | None = None,
           eta: float = 0.0, noises: list[torch.Tensor] | None = None, record: bool = False,
           progress: bool = False) -> Trajectory:
    """DDIM (eta = 0) or stored-noise DDPM-style (eta > 0, `noises` from stored_noises) sampling."""
    assert x_T.ndim == 4, f"x_T must be [B, C, H, W], got {tuple(x_T.shape)}"
    if eta > 0 and (noises is None or len(noises) != steps):
        raise ValueError(f"eta={eta} needs `noises`: one stored noise per step ({steps}), see stored_noises()")
    scheduler.set_timesteps(steps)
    traj = Trajectory(x0=x_T, timesteps=[int(t) for t in scheduler.timesteps])
    x = x_T
    for i, t in enumerate(tqdm(traj.timesteps, desc="sample", disable=not progress, leave=False)):
        eps, h = eps_and_h(unet, x, t, edit)
        if record:
            traj.x_t[t], traj.h[t] = x, h
        noise = noises[i] if eta > 0 else None
        if edit is not None and edit.asymmetric and edit.applies(t):
            eps_plain = unet(x, t).sample
            x = scheduler.step(eps_plain, t, x, eta=eta, variance_noise=noise).prev_sample
            x = x - _x0_gain(scheduler, t, steps) * (eps - eps_plain)
        else:
            x = scheduler.step(eps, t, x, eta=eta, variance_noise=noise).prev_sample
    traj.x0 = x
    return traj


def _x0_gain(scheduler: DDIMScheduler, t: int, steps: int) -> torch.Tensor:
    """d x_prev / d eps through the predicted-x0 term alone: sqrt(a_prev) * sqrt(1 - a_t) / sqrt(a_t)."""
    a_t = _alpha_bar(scheduler, t)
    a_prev = _alpha_bar(scheduler, t - scheduler.config.num_train_timesteps // steps)
    return a_prev.sqrt() * (1 - a_t).sqrt() / a_t.sqrt()


def _alpha_bar(scheduler: DDIMScheduler, t: int) -> torch.Tensor:
    return scheduler.alphas_cumprod[t] if t >= 0 else scheduler.final_alpha_cumprod


@torch.no_grad()
def ddim_invert(unet: UNet2DModel, scheduler: DDIMScheduler, x0: torch.Tensor, steps: int,
                progress: bool = False) -> torch.Tensor:
    """x0 -> x_T by running the eta = 0 DDIM update of `sample` backwards (same timesteps, same alphas).

    Sampling maps x_t -> x_prev with eps(x_t, t); inversion maps x_prev -> x_t with eps(x_prev, t),
    which is the only approximation: sampling from the result reconstructs x0 closely, not exactly.
    """
    assert x0.ndim == 4, f"x0 must be [B, C, H, W], got {tuple(x0.shape)}"
    scheduler.set_timesteps(steps)
    stride = scheduler.config.num_train_timesteps // steps
    x = x0
    for t in tqdm([int(t) for t in reversed(scheduler.timesteps)], desc="invert", disable=not progress, leave=False):
        a_prev, a_t = _alpha_bar(scheduler, t - stride), _alpha_bar(scheduler, t)
        eps = unet(x, t).sample
        x0_pred = (x - (1 - a_prev).sqrt() * eps) / a_prev.sqrt()
        x = a_t.sqrt() * x0_pred + (1 - a_t).sqrt() * eps
    return x
