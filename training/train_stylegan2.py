"""Train a StyleGAN2 (Karras et al. 2020) on a folder of images, an .npz, or QuickDraw strokes.

    python -m training.train_stylegan2 --config configs/train_default.yaml [--resume auto|none|PATH]
    torchrun --nproc_per_node=4 -m training.train_stylegan2 --config ...      # several GPUs

Non-saturating logistic loss, lazy R1 on reals, optional path-length regularisation, style mixing,
an exponential moving average of G (g_ema, the network one ships), DiffAugment for small collections,
mixed precision on CUDA. Checkpoints (rosinality layout + 'config', 'step', 'latent_avg', so
models.load reads them) are written atomically every `snapshot_kimg`.

Resume is exact: each step re-seeds every RNG from (seed, step, rank), and the data sampler can start
at any sample, so a run resumed from step k computes the same losses as one that never stopped.
"""
from __future__ import annotations

import argparse
import math
import os
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from loguru import logger
from torch import nn
from tqdm import tqdm

from common.config import to_dict
from common.logging import setup_logging
from models.stylegan2 import Discriminator, Generator
from training import checkpoint as ckpt_io
from training.augment import diff_augment, parse_policy
from training.cli import add_config_args, load_with_overrides
from training.data import DataConfig, build_dataset, make_loader, to_tensor
from training.grids import save_grid
from training.losses import d_logistic_loss, d_r1_penalty, g_nonsaturating_loss, g_path_length_penalty


@dataclass
class ModelConfig:
    size: int = 256
    style_dim: int = 512
    n_mlp: int = 8
    channel_multiplier: int = 2
    channel_max: int = 512
    img_channels: int = 3
    lr_mlp: float = 0.01


@dataclass
class StyleGAN2Config:
    data: DataConfig
    model: ModelConfig = field(default_factory=ModelConfig)
    out_dir: str = "runs/stylegan2"
    seed: int = 0
    batch: int = 16                     # per process
    total_kimg: float = 1000.0          # stop after this many thousand real images (all processes)
    max_minutes: float = 0.0            # > 0: also stop (with a checkpoint) after this wall time
    lr: float = 0.002
    r1_gamma: float = 10.0              # R1 weight is gamma / 2
    d_reg_every: int = 16
    g_reg_every: int = 4
    path_reg: float = 2.0               # 0 turns path-length regularisation off
    path_batch_shrink: int = 2
    mixing: float = 0.9                 # probability of style mixing
    ema_kimg: float = 10.0              # EMA half-life in thousand images
    augment: str = "translation,cutout"  # DiffAugment ops: color, translation, cutout; "" for none
    snapshot_kimg: float = 10.0
    sample_kimg: float = 2.0
    keep_checkpoints: int = 3
    n_sample: int = 32
    amp: bool = True                    # mixed precision (CUDA only; ignored on CPU)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    num_workers: int = 0
    threads: int = 0                    # > 0: torch.set_num_threads (CPU runs on shared machines)
    log_every: int = 20

    def __post_init__(self):
        if self.batch < 1 or (self.batch > 4 and self.batch % 4):
            raise ValueError(f"batch must be 1..4 or a multiple of 4 (minibatch-stddev groups), got {self.batch}")
        if self.total_kimg <= 0 or self.snapshot_kimg <= 0 or self.sample_kimg <= 0:
            raise ValueError("total_kimg, snapshot_kimg and sample_kimg must be > 0")
        parse_policy(self.augment)


# ------------------------------------------------------------------------------------------ helpers


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0


def init_distributed(device_kind: str) -> Dist:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; without them this is a single process."""
    if "WORLD_SIZE" not in os.environ:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("nccl" if device_kind == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def resolve_device(cfg: StyleGAN2Config, d: Dist) -> torch.device:
    kind = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("config device: cuda, but no CUDA device is available")
        torch.cuda.set_device(d.local_rank)
        return torch.device("cuda", d.local_rank)
    return torch.device("cpu")


def seed_step(seed: int, step: int, rank: int) -> None:
    """Every random draw of a step (z, mixing index, noise, DiffAugment) follows from (seed, step, rank)."""
    s = (seed * 1_000_003 + step) * 64 + rank
    torch.manual_seed(s)
    random.seed(s)


def mixing_noise(batch: int, dim: int, prob: float, device: torch.device) -> list[torch.Tensor]:
    if prob > 0 and random.random() < prob:
        return list(torch.randn(2, batch, dim, device=device).unbind(0))
    return [torch.randn(batch, dim, device=device)]


@torch.no_grad()
def accumulate(ema: nn.Module, model: nn.Module, decay: float) -> None:
    for pe, pm in zip(ema.parameters(), model.parameters()):
        pe.lerp_(pm.detach(), 1 - decay)


def reg_adam(params, lr: float, reg_every: int) -> torch.optim.Adam:
    """Adam with lr and betas corrected for lazy regularisation (the paper's appendix B)."""
    ratio = reg_every / (reg_every + 1)
    return torch.optim.Adam(params, lr=lr * ratio, betas=(0 ** ratio, 0.99 ** ratio))


def unwrap(m: nn.Module) -> nn.Module:
    return m.module if hasattr(m, "module") else m


# ------------------------------------------------------------------------------------------ trainer


class StyleGAN2Trainer:
    def __init__(self, cfg: StyleGAN2Config, dist: Dist | None = None):
        self.cfg = cfg
        self.dist = dist or init_distributed("cuda" if cfg.device != "cpu" and torch.cuda.is_available() else "cpu")
        self.device = resolve_device(cfg, self.dist)
        self.amp = cfg.amp and self.device.type == "cuda"
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        self.out = Path(cfg.out_dir)
        self.ckpt_dir = self.out / "checkpoints"
        m = cfg.model
        torch.manual_seed(cfg.seed)  # the initial weights
        self.G = Generator(m.size, m.style_dim, m.n_mlp, m.channel_multiplier, lr_mlp=m.lr_mlp,
                           channel_max=m.channel_max, img_channels=m.img_channels).to(self.device)
        self.D = Discriminator(m.size, m.channel_multiplier, channel_max=m.channel_max,
                               img_channels=m.img_channels).to(self.device)
        self.G_ema = Generator(**self.G.config).to(self.device).eval().requires_grad_(False)
        self.G_ema.load_state_dict(self.G.state_dict())
        self.g_optim = reg_adam(self.G.parameters(), cfg.lr, cfg.g_reg_every)
        self.d_optim = reg_adam(self.D.parameters(), cfg.lr, cfg.d_reg_every)
        self.g_scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.d_scaler = torch.amp.GradScaler("cuda", enabled=self.amp)
        self.mean_path_length = torch.zeros((), device=self.device)
        self.step = 0
        self.policy = parse_policy(cfg.augment)
        self.sample_z = torch.randn(cfg.n_sample, m.style_dim, generator=torch.Generator().manual_seed(cfg.seed))
        self.dataset = build_dataset(cfg.data, m.size, m.img_channels, cfg.seed)
        self.G_train, self.D_train = self.G, self.D
        if self.dist.world > 1 or "WORLD_SIZE" in os.environ:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [self.dist.local_rank] if self.device.type == "cuda" else None
            self.G_train = DDP(self.G, device_ids=ids, forward_sync_buffers=False)
            self.D_train = DDP(self.D, device_ids=ids, forward_sync_buffers=False)

    # -------------------------------------------------------------- state

    @property
    def images_per_step(self) -> int:
        return self.cfg.batch * self.dist.world

    def kimg(self, step: int | None = None) -> float:
        return (self.step if step is None else step) * self.images_per_step / 1000

    def state(self) -> dict:
        with torch.no_grad():
            torch.manual_seed(self.cfg.seed + 1)  # latent_avg is a deterministic summary of g_ema
            latent_avg = self.G_ema.mean_latent(4096)[0].cpu()
        return {
            "g": self.G.state_dict(), "d": self.D.state_dict(), "g_ema": self.G_ema.state_dict(),
            "g_optim": self.g_optim.state_dict(), "d_optim": self.d_optim.state_dict(),
            "g_scaler": self.g_scaler.state_dict(), "d_scaler": self.d_scaler.state_dict(),
            "mean_path_length": self.mean_path_length.cpu(), "step": self.step, "kimg": self.kimg(),
            "latent_avg": latent_avg,
            "config": {"generator": self.G.config, "discriminator": self.D.config, "train": to_dict(self.cfg)},
        }

    def load_state(self, state: dict, source: str) -> None:
        cfg_g = state.get("config", {}).get("generator")
        if cfg_g != self.G.config:
            raise ValueError(f"{source}: checkpoint generator config {cfg_g} differs from this run's "
                             f"{self.G.config}; resume needs the same model settings")
        self.G.load_state_dict(state["g"])
        self.D.load_state_dict(state["d"])
        self.G_ema.load_state_dict(state["g_ema"])
        self.g_optim.load_state_dict(state["g_optim"])
        self.d_optim.load_state_dict(state["d_optim"])
        if state.get("g_scaler"):
            self.g_scaler.load_state_dict(state["g_scaler"])
            self.d_scaler.load_state_dict(state["d_scaler"])
        self.mean_path_length = state["mean_path_length"].to(self.device)
        self.step = int(state["step"])

    def resume(self, resume: str) -> None:
        """resume = 'auto' (newest loadable checkpoint in out_dir, if any), 'none', or a path."""
        found = ckpt_io.find_resume(resume, self.ckpt_dir)
        if found is None:
            return
        path, state = found
        self.load_state(state, str(path))
        logger.info(f"resumed from {path} at step {self.step} ({self.kimg():.2f} kimg)")

    def save(self) -> Path | None:
        if not self.dist.main:
            return None
        path = ckpt_io.save_checkpoint(self.ckpt_dir, self.step, self.state(), self.cfg.keep_checkpoints)
        logger.info(f"checkpoint {path} ({self.kimg():.2f} kimg)")
        return path

    @torch.no_grad()
    def save_samples(self) -> Path | None:
        if not self.dist.main:
            return None
        imgs = []
        for z in self.sample_z.split(16):
            img, _ = self.G_ema([z.to(self.device)], randomize_noise=False)
            imgs.append(img.float().cpu())
        path = save_grid(self.out / "samples" / f"{self.step:08d}.png", torch.cat(imgs),
                         ncol=int(math.ceil(math.sqrt(self.cfg.n_sample))))
        return path

    # -------------------------------------------------------------- one step

    def augment(self, x: torch.Tensor) -> torch.Tensor:
        return diff_augment(x, self.policy) if self.policy else x

    def _autocast(self):
        return torch.autocast("cuda", dtype=torch.float16, enabled=self.amp)

    def train_step(self, real: torch.Tensor) -> dict[str, float]:
        cfg, G, D = self.cfg, self.G_train, self.D_train
        batch, style_dim = real.shape[0], cfg.model.style_dim
        seed_step(cfg.seed, self.step, self.dist.rank)
        logs = {}

        # discriminator
        self.G.requires_grad_(False)
        self.D.requires_grad_(True)
        with self._autocast():
            fake, _ = G(mixing_noise(batch, style_dim, cfg.mixing, self.device))
            fake_pred = D(self.augment(fake))
            real_pred = D(self.augment(real))
            d_loss = d_logistic_loss(real_pred.float(), fake_pred.float())
        self.d_optim.zero_grad(set_to_none=True)
        self.d_scaler.scale(d_loss).backward()
        self.d_scaler.step(self.d_optim)
        self.d_scaler.update()
        logs.update(d_loss=d_loss.item(), real_score=real_pred.float().mean().item(),
                    fake_score=fake_pred.float().mean().item())

        if cfg.r1_gamma > 0 and self.step % cfg.d_reg_every == 0:
            real_r1 = real.detach().requires_grad_(True)
            real_pred = D(self.augment(real_r1))  # fp32: the gradient penalty is precision-sensitive
            r1 = d_r1_penalty(real_pred, real_r1)
            self.d_optim.zero_grad(set_to_none=True)
            (cfg.r1_gamma / 2 * r1 * cfg.d_reg_every + 0 * real_pred[0, 0]).backward()
            self.d_optim.step()
            logs["r1"] = r1.item()

        # generator
        self.G.requires_grad_(True)
        self.D.requires_grad_(False)
        with self._autocast():
            fake, _ = G(mixing_noise(batch, style_dim, cfg.mixing, self.device))
            g_loss = g_nonsaturating_loss(D(self.augment(fake)).float())
        self.g_optim.zero_grad(set_to_none=True)
        self.g_scaler.scale(g_loss).backward()
        self.g_scaler.step(self.g_optim)
        self.g_scaler.update()
        logs["g_loss"] = g_loss.item()

        if cfg.path_reg > 0 and self.step % cfg.g_reg_every == 0:
            path_batch = max(1, batch // cfg.path_batch_shrink)
            fake, latents = G(mixing_noise(path_batch, style_dim, cfg.mixing, self.device), return_latents=True)
            penalty, self.mean_path_length, path_len = g_path_length_penalty(fake, latents, self.mean_path_length)
            self.g_optim.zero_grad(set_to_none=True)
            # the 0 * fake term keeps every output in the graph, which DDP's gradient hooks expect
            (cfg.path_reg * cfg.g_reg_every * penalty + 0 * fake[0, 0, 0, 0]).backward()
            self.g_optim.step()
            logs.update(path_penalty=penalty.item(), path_length=path_len.item())

        decay = 0.5 ** (self.images_per_step / (cfg.ema_kimg * 1000)) if cfg.ema_kimg > 0 else 0.0
        accumulate(self.G_ema, self.G, decay)
        self.step += 1
        return logs

    # -------------------------------------------------------------- loop

    def total_steps(self) -> int:
        return int(math.ceil(self.cfg.total_kimg * 1000 / self.images_per_step))

    def _crossed(self, every_kimg: float) -> bool:
        return math.floor(self.kimg() / every_kimg) > math.floor(self.kimg(self.step - 1) / every_kimg)

    def fit(self, max_steps: int | None = None) -> list[dict]:
        """Train until total_kimg (or max_steps more steps, or max_minutes); returns per-step logs."""
        cfg = self.cfg
        end = self.total_steps() if max_steps is None else min(self.total_steps(), self.step + max_steps)
        loader = make_loader(self.dataset, cfg.batch, cfg.seed, self.step * cfg.batch, self.dist.rank,
                             self.dist.world, cfg.num_workers)
        writer = self._tensorboard()
        history, t0 = [], time.monotonic()
        bar = tqdm(total=end, initial=self.step, disable=not self.dist.main, unit="step", dynamic_ncols=True)
        while self.step < end:
            logs = self.train_step(to_tensor(next(loader)).to(self.device))
            logs["step"] = self.step
            history.append(logs)
            bar.update(1)
            bar.set_postfix(kimg=f"{self.kimg():.2f}", d=f"{logs['d_loss']:.3f}", g=f"{logs['g_loss']:.3f}")
            if writer is not None:
                for k, v in logs.items():
                    if k != "step":
                        writer.add_scalar(f"train/{k}", v, self.step)
            if self.dist.main and self.step % cfg.log_every == 0:
                rate = (time.monotonic() - t0) / max(1, len(history))
                logger.info(f"step {self.step} kimg {self.kimg():.2f} {rate:.2f} s/step "
                            + " ".join(f"{k}={v:.4f}" for k, v in logs.items() if k != "step"))
            timeout = cfg.max_minutes > 0 and time.monotonic() - t0 > cfg.max_minutes * 60
            if self._crossed(cfg.sample_kimg):
                self.save_samples()
            if self._crossed(cfg.snapshot_kimg) or self.step == end or timeout:
                self.save()
            if timeout:
                logger.info(f"max_minutes={cfg.max_minutes} reached at step {self.step}; stopping")
                break
        bar.close()
        if writer is not None:
            writer.close()
        return history

    def _tensorboard(self):
        if not self.dist.main:
            return None
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:
            logger.info("tensorboard is not installed: scalars go to the log only")
            return None
        return SummaryWriter(str(self.out / "tensorboard"))


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p)
    p.add_argument("--resume", default="auto", help="'auto' (newest checkpoint in out_dir), 'none', or a path")
    p.add_argument("--max-steps", type=int, default=None, help="stop after this many more steps")
    args = p.parse_args(argv)
    cfg = load_with_overrides(args.config, StyleGAN2Config, args.overrides)
    setup_logging(Path(cfg.out_dir) / "logs", name="train_stylegan2")
    trainer = StyleGAN2Trainer(cfg)
    logger.info(f"G {sum(p.numel() for p in trainer.G.parameters()) / 1e6:.2f} M params, "
                f"D {sum(p.numel() for p in trainer.D.parameters()) / 1e6:.2f} M params, device {trainer.device}, "
                f"world size {trainer.dist.world}, amp {trainer.amp}")
    trainer.resume(args.resume)
    if trainer.dist.main:
        trainer.save_samples()
    trainer.fit(args.max_steps)


if __name__ == "__main__":
    main()
