"""The three ways to find h-space edits on a sampled batch, and the gamma sweeps that show them.

Every method returns a list of `Direction`s: a name and, per edited timestep t, the h-space step that
gamma = 1 adds. Steps are unit directions scaled by the spread (standard deviation over the batch) of h_t
along them, so gamma counts "standard deviations of the data" whatever the method or timestep.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from diffusers import DDIMScheduler, UNet2DModel
from loguru import logger
from tqdm import tqdm

from common.drawing import ink_coverage
from editing.hspace.directions import (jacobian_directions, mean_difference, orthogonalize, pca_per_timestep,
                                       spread, svm_normal)
from editing.hspace.sampling import Edit, Trajectory, sample, stored_noises


@dataclass
class Direction:
    name: str
    steps: dict[int, torch.Tensor]  # t -> [C, H, W] (shared) or [B, C, H, W] (one per sample)


def initial_noise(n: int, size: int, seed: int) -> torch.Tensor:
    return torch.randn(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


def record_batch(unet: UNet2DModel, scheduler: DDIMScheduler, n: int, steps: int, seed: int) -> Trajectory:
    """n unedited DDIM samples with their h_t and x_t at every timestep."""
    return sample(unet, scheduler, initial_noise(n, unet.config.sample_size, seed), steps, record=True, progress=True)


def edited_timesteps(traj: Trajectory, window: tuple[int, int]) -> list[int]:
    """The trajectory's timesteps t with window[0] <= t <= window[1]."""
    ts = [t for t in traj.timesteps if window[0] <= t <= window[1]]
    if not ts:
        raise ValueError(f"no sampling timestep lies in the edit window {window} (timesteps {traj.timesteps})")
    return ts


def find_pca(traj: Trajectory, k: int, window: tuple[int, int]) -> list[Direction]:
    """(a) The first k principal axes of h_t at each edited timestep, one standard deviation long."""
    ts = edited_timesteps(traj, window)
    axes, stds = pca_per_timestep({t: traj.h[t] for t in ts}, k)
    return [Direction(f"PC{i + 1}", {t: axes[t][i] * stds[t][i] for t in ts}) for i in range(k)]


def find_jacobian(unet: UNet2DModel, traj: Trajectory, k: int, window: tuple[int, int], t_jacobian: int, rows: list[int],
                  iters: int = 50, region: torch.Tensor | None = None) -> list[Direction]:
    """(b) The top-k right singular vectors of d eps / d h at the timestep nearest t_jacobian, found for
    each sample in `rows` on its own trajectory (they are local) and added at every edited timestep."""
    t_j = min(traj.timesteps, key=lambda t: abs(t - t_jacobian))
    per_sample = []
    for b in tqdm(rows, desc="jacobian", leave=False):
        values, vectors = jacobian_directions(unet, traj.x_t[t_j][b: b + 1], t_j, k, iters, region)
        logger.info(f"sample {b}: top singular values of d eps/d h at t={t_j}: {[round(v, 4) for v in values.tolist()]}")
        per_sample.append(vectors)
    vectors = torch.stack(per_sample, 1)  # [k, B, C, H, W]
    ts = edited_timesteps(traj, window)
    return [Direction(f"J{i + 1}", {t: vectors[i] * spread(traj.h[t], vectors[i])[:, None, None, None]
                                    for t in ts}) for i in range(k)]


def find_supervised(traj: Trajectory, scores: torch.Tensor, window: tuple[int, int], ratio: float = 0.5,
                    orthogonal_to: list[Direction] = ()) -> list[Direction]:
    """(c) Mean difference and linear-SVM normal between the top and bottom `ratio` of samples by score,
    per edited timestep; (d) with `orthogonal_to`, also the mean difference made orthogonal to those.

    These directions are correlational: they follow how h_t differs between samples that end up high or
    low. At noisy timesteps h_t mostly encodes the noise in x_t, which correlates with the outcome without
    causing it through h, so supervised edits belong to the less noisy timesteps (the CLI default window
    is t <= 600; docs/hspace/README.md has the measurement).
    """
    ts = edited_timesteps(traj, window)
    order = scores.argsort(descending=True)
    n_side = max(2, int(round(ratio * len(scores))))
    labels = torch.zeros(len(scores), dtype=torch.bool)
    labels[order[:n_side]] = True
    keep = torch.cat([order[:n_side], order[-n_side:]])
    mean_d, svm_d, proj_d = {}, {}, {}
    for t in ts:
        h = traj.h[t]
        mean_d[t] = mean_difference(h[keep], labels[keep])
        svm_d[t] = svm_normal(h, scores, ratio)
        if orthogonal_to:
            proj_d[t] = orthogonalize(mean_d[t], [d.steps[t] for d in orthogonal_to])
    out = [Direction("mean diff", {t: n * spread(traj.h[t], n) for t, n in mean_d.items()}),
           Direction("SVM", {t: n * spread(traj.h[t], n) for t, n in svm_d.items()})]
    if orthogonal_to:
        names = ",".join(d.name for d in orthogonal_to)
        out.append(Direction(f"mean diff perp {names}", {t: n * spread(traj.h[t], n) for t, n in proj_d.items()}))
    return out


@torch.no_grad()
def sweep(unet: UNet2DModel, scheduler: DDIMScheduler, x_T: torch.Tensor, steps: int, direction: Direction,
          gammas: list[float], eta: float = 0.0, noise_seed: int = 0) -> torch.Tensor:
    """Each sample re-generated with h_t + gamma * step_t for every gamma: [B, G, C, H, W], in one batch.

    With eta > 0 the stored noises of sample b are shared by all its gammas, so columns differ by the edit only.
    """
    b, g = x_T.shape[0], len(gammas)
    steps_bg = {t: (s.repeat_interleave(g, 0) if s.ndim == 4 else s) for t, s in direction.steps.items()}
    for s in steps_bg.values():
        assert s.ndim == 3 or s.shape[0] == b * g, f"per-sample steps need {b} samples, got {s.shape[0] // g}"
    gamma = torch.tensor(gammas, dtype=x_T.dtype).repeat(b)
    noises = None
    if eta > 0:
        noises = [n.repeat_interleave(g, 0) for n in stored_noises(tuple(x_T.shape), steps, noise_seed)]
    traj = sample(unet, scheduler, x_T.repeat_interleave(g, 0), steps, Edit(steps_bg, gamma), eta, noises)
    return traj.x0.reshape(b, g, *x_T.shape[1:])
