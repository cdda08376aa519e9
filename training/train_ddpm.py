"""Train the small QuickDraw DDPM that editing/hspace explores, and export it in diffusers' format.

    python -m training.train_ddpm train  --config configs/ddpm_quickdraw.yaml --run runs/ddpm_quickdraw
    python -m training.train_ddpm export --run runs/ddpm_quickdraw --dest weights/ddpm_quickdraw

Data: the 28 px Quick, Draw! bitmaps (Google, CC BY 4.0) in ../shared/data/quickdraw, padded with
paper to 32 px. Images follow the project convention turned to the model range: paper = +1, ink = -1.
The last `holdout_per_class` drawings of each class are never trained on; the editing tests invert them.

The model is diffusers' UNet2DModel trained with the epsilon objective of Ho et al. on the 1000-step
DDPM schedule. Training is meant to run in the background on a shared CPU: a wall-time budget (summed
over resumes), atomic checkpoints (a kill loses at most `checkpoint_every` steps; `train` resumes from
the run folder) and sample grids to watch. The exported model is the EMA copy.
"""
from __future__ import annotations

import argparse
import copy
import io
import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import DDIMScheduler, DDPMScheduler, UNet2DModel
from loguru import logger
from PIL import Image
from tqdm import tqdm

from common.atomic import atomic_torch_save, atomic_write_bytes, atomic_write_text
from common.config import from_dict, load_config
from common.drawing import ink_coverage
from common.logging import setup_logging
from common.paths import shared_dir

CHECKPOINT = "checkpoint.pt"
IMAGE_SIZE = 32
BITMAP_SIZE = 28


@dataclass
class DataConfig:
    npz: str = "data/quickdraw/quickdraw_bitmaps_28.npz"  # relative to ../shared unless absolute
    classes: list[str] = field(default_factory=lambda: ["apple", "bicycle", "cat", "diamond", "eye", "fish"])
    holdout_per_class: int = 100
    hflip: bool = True

    def __post_init__(self):
        if self.holdout_per_class < 0:
            raise ValueError(f"holdout_per_class must be >= 0, got {self.holdout_per_class}")


@dataclass
class ModelConfig:
    block_out_channels: list[int] = field(default_factory=lambda: [16, 32, 64])
    down_block_types: list[str] = field(default_factory=lambda: ["DownBlock2D"] * 3)
    up_block_types: list[str] = field(default_factory=lambda: ["UpBlock2D"] * 3)
    layers_per_block: int = 1
    norm_num_groups: int = 8
    attention_head_dim: int = 8
    add_attention: bool = True  # attention in the mid block, i.e. in h-space itself

    def __post_init__(self):
        if not (len(self.block_out_channels) == len(self.down_block_types) == len(self.up_block_types)):
            raise ValueError("block_out_channels, down_block_types and up_block_types must have equal lengths")


@dataclass
class ScheduleConfig:
    num_train_timesteps: int = 1000
    beta_start: float = 0.0001
    beta_end: float = 0.02
    beta_schedule: str = "linear"


@dataclass
class OptimConfig:
    batch_size: int = 32
    lr: float = 8e-4
    warmup_steps: int = 200
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.995
    max_steps: int = 100_000
    max_minutes: float = 75.0  # wall time summed over resumes; whichever of the two limits comes first
    num_threads: int = 1  # the machine is shared: one core by default
    seed: int = 0

    def __post_init__(self):
        if self.batch_size < 1 or self.lr <= 0 or not 0 <= self.ema_decay < 1:
            raise ValueError("batch_size >= 1, lr > 0 and 0 <= ema_decay < 1 are required")


@dataclass
class LoggingConfig:
    checkpoint_every: int = 250
    sample_every: int = 500
    sample_count: int = 36
    sample_steps: int = 25


@dataclass
class DDPMConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    schedule: ScheduleConfig = field(default_factory=ScheduleConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)


# ---------------------------------------------------------------- data

def resolve_npz(cfg: DataConfig) -> Path:
    path = Path(cfg.npz)
    if not path.is_absolute():
        root = shared_dir()
        if root is None:
            raise FileNotFoundError(f"data.npz '{cfg.npz}' is relative to ../shared, which is absent "
                                    "(set NEWSNOW_SHARED or give an absolute path)")
        path = root / path
    if not path.is_file():
        raise FileNotFoundError(f"data.npz: {path} not found (expected quickdraw_bitmaps_28.npz, CC BY 4.0)")
    return path


def bitmaps_to_model_range(bitmaps: np.ndarray) -> torch.Tensor:
    """uint8 [N, 28, 28] with 255 = ink -> float [N, 1, 32, 32], paper = +1, ink = -1 (paper padding)."""
    assert bitmaps.dtype == np.uint8 and bitmaps.shape[1:] == (BITMAP_SIZE, BITMAP_SIZE), bitmaps.shape
    x = 1.0 - 2.0 * torch.from_numpy(bitmaps).float()[:, None] / 255.0
    pad = (IMAGE_SIZE - BITMAP_SIZE) // 2
    return F.pad(x, (pad, pad, pad, pad), value=1.0)


def load_bitmaps(cfg: DataConfig, split: str) -> tuple[torch.Tensor, torch.Tensor]:
    """(images [N, 1, 32, 32] in [-1, 1], class index [N]) for split 'train' or 'holdout'."""
    if split not in ("train", "holdout"):
        raise ValueError(f"split must be 'train' or 'holdout', got {split!r}")
    path = resolve_npz(cfg)
    with np.load(path) as z:
        missing = [c for c in cfg.classes if c not in z.files]
        if missing:
            raise KeyError(f"{path}: classes {missing} not found (has {z.files})")
        parts, labels = [], []
        for i, name in enumerate(cfg.classes):
            a = z[name]
            a = a[: len(a) - cfg.holdout_per_class] if split == "train" else a[len(a) - cfg.holdout_per_class:]
            parts.append(a)
            labels.append(np.full(len(a), i))
    return bitmaps_to_model_range(np.concatenate(parts)), torch.from_numpy(np.concatenate(labels))


# ---------------------------------------------------------------- model

def build_unet(cfg: ModelConfig) -> UNet2DModel:
    return UNet2DModel(
        sample_size=IMAGE_SIZE, in_channels=1, out_channels=1,
        block_out_channels=tuple(cfg.block_out_channels), down_block_types=tuple(cfg.down_block_types),
        up_block_types=tuple(cfg.up_block_types), layers_per_block=cfg.layers_per_block,
        norm_num_groups=cfg.norm_num_groups, attention_head_dim=cfg.attention_head_dim,
        add_attention=cfg.add_attention)


def build_ddim_scheduler(cfg: ScheduleConfig) -> DDIMScheduler:
    # clip_sample off: inversion must run the exact reverse of sampling; steps_offset 1 as in SD/DDIM.
    return DDIMScheduler(num_train_timesteps=cfg.num_train_timesteps, beta_start=cfg.beta_start,
                         beta_end=cfg.beta_end, beta_schedule=cfg.beta_schedule, clip_sample=False,
                         set_alpha_to_one=True, steps_offset=1, prediction_type="epsilon")


@torch.no_grad()
def ema_update(ema: torch.nn.Module, model: torch.nn.Module, decay: float) -> None:
    ema_p = list(ema.parameters())
    torch._foreach_lerp_(ema_p, [p.detach() for p in model.parameters()], 1.0 - decay)


@torch.no_grad()
def ddim_sample(unet: UNet2DModel, scheduler: DDIMScheduler, n: int, steps: int, seed: int) -> torch.Tensor:
    """A few DDIM (eta = 0) samples for monitoring; editing/hspace has the full sampler."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 1, IMAGE_SIZE, IMAGE_SIZE, generator=g)
    scheduler.set_timesteps(steps)
    for t in scheduler.timesteps:
        x = scheduler.step(unet(x, t).sample, t, x).prev_sample
    return x.clamp(-1, 1)


def image_grid(images: torch.Tensor, nrow: int) -> Image.Image:
    """[-1, 1] images [N, 1, H, W] -> grey PIL grid with 2 px mid-grey gutters."""
    n, _, h, w = images.shape
    ncol = nrow
    rows = math.ceil(n / ncol)
    canvas = np.full((rows * (h + 2) + 2, ncol * (w + 2) + 2), 128, np.uint8)
    pix = ((images[:, 0].clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
    for i in range(n):
        r, c = divmod(i, ncol)
        canvas[2 + r * (h + 2): 2 + r * (h + 2) + h, 2 + c * (w + 2): 2 + c * (w + 2) + w] = pix[i]
    return Image.fromarray(canvas)


def save_png(img: Image.Image, path: Path, scale: int = 1) -> None:
    if scale != 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    atomic_write_bytes(path, buf.getvalue())


# ---------------------------------------------------------------- training

def lr_at(step: int, cfg: OptimConfig) -> float:
    return cfg.lr * min(1.0, (step + 1) / max(1, cfg.warmup_steps))


def new_state(cfg: DDPMConfig) -> dict:
    torch.manual_seed(cfg.optim.seed)
    unet = build_unet(cfg.model)
    opt = torch.optim.AdamW(unet.parameters(), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)
    return {"unet": unet, "ema": copy.deepcopy(unet).requires_grad_(False), "opt": opt, "step": 0,
            "elapsed_s": 0.0, "gen": torch.Generator().manual_seed(cfg.optim.seed)}


def save_checkpoint(run: Path, state: dict, cfg: DDPMConfig) -> None:
    atomic_torch_save({"config": asdict(cfg), "step": state["step"], "elapsed_s": state["elapsed_s"],
                       "unet": state["unet"].state_dict(), "ema": state["ema"].state_dict(),
                       "opt": state["opt"].state_dict(), "gen": state["gen"].get_state()},
                      run / CHECKPOINT)


def load_checkpoint(path: Path) -> tuple[dict, DDPMConfig]:
    ck = torch.load(path, map_location="cpu", weights_only=True)
    cfg = from_dict(DDPMConfig, ck["config"], str(path))
    state = new_state(cfg)
    state["unet"].load_state_dict(ck["unet"])
    state["ema"].load_state_dict(ck["ema"])
    state["opt"].load_state_dict(ck["opt"])
    state["gen"].set_state(ck["gen"])
    state["step"], state["elapsed_s"] = ck["step"], ck["elapsed_s"]
    return state, cfg


def train(cfg: DDPMConfig, run: Path, max_steps: int | None = None, max_minutes: float | None = None) -> dict:
    """Train until max_steps or the wall-time budget; resumes from run/checkpoint.pt when present.

    A checkpoint carries its own config, which wins over `cfg` on resume (a run is one experiment);
    `max_steps` / `max_minutes` override its limits, e.g. to extend a finished run.
    """
    torch.set_num_threads(cfg.optim.num_threads)
    run.mkdir(parents=True, exist_ok=True)
    if (run / CHECKPOINT).is_file():
        state, cfg = load_checkpoint(run / CHECKPOINT)
        logger.info(f"resumed {run / CHECKPOINT} at step {state['step']} ({state['elapsed_s'] / 60:.1f} min trained)")
    else:
        state = new_state(cfg)
        atomic_write_text(run / "config.json", json.dumps(asdict(cfg), indent=2))
    if max_minutes is not None:
        cfg.optim.max_minutes = max_minutes
    o, lg = cfg.optim, cfg.logging
    stop_step = max_steps if max_steps is not None else o.max_steps
    data, _ = load_bitmaps(cfg.data, "train")
    noise_sched = DDPMScheduler(**{k: v for k, v in asdict(cfg.schedule).items()})
    unet, ema, opt, gen = state["unet"], state["ema"], state["opt"], state["gen"]
    logger.info(f"{len(data)} training images, UNet {sum(p.numel() for p in unet.parameters()) / 1e6:.2f} M "
                f"parameters, steps {state['step']}..{stop_step}, budget {o.max_minutes} min")
    bar = tqdm(total=stop_step, initial=state["step"], desc="ddpm", dynamic_ncols=True)
    t_last, loss_avg = time.monotonic(), None
    unet.train()
    while state["step"] < stop_step and state["elapsed_s"] < o.max_minutes * 60:
        loss = train_step(unet, opt, noise_sched, data, gen, state["step"], cfg)
        ema_update(ema, unet, min(o.ema_decay, (1 + state["step"]) / (10 + state["step"])))
        state["step"] += 1
        now = time.monotonic()
        state["elapsed_s"] += now - t_last
        t_last = now
        loss_avg = loss if loss_avg is None else 0.98 * loss_avg + 0.02 * loss
        bar.update(1)
        bar.set_postfix(loss=f"{loss_avg:.4f}")
        if state["step"] % lg.checkpoint_every == 0 or state["step"] >= stop_step:
            save_checkpoint(run, state, cfg)
            logger.info(f"step {state['step']} loss {loss_avg:.4f} elapsed {state['elapsed_s'] / 60:.1f} min: checkpoint")
        if state["step"] % lg.sample_every == 0:
            write_samples(ema, cfg, run / "samples" / f"step_{state['step']:06d}.png")
            t_last = time.monotonic()  # sampling is monitoring, not training time
    bar.close()
    save_checkpoint(run, state, cfg)
    logger.info(f"stopped at step {state['step']} after {state['elapsed_s'] / 60:.1f} min of training")
    return state


def train_step(unet, opt, noise_sched, data, gen, step: int, cfg: DDPMConfig) -> float:
    o = cfg.optim
    idx = torch.randint(0, len(data), (o.batch_size,), generator=gen)
    x0 = data[idx]
    if cfg.data.hflip:
        flip = torch.rand(o.batch_size, generator=gen) < 0.5
        x0 = torch.where(flip[:, None, None, None], x0.flip(-1), x0)
    noise = torch.randn(x0.shape, generator=gen)
    t = torch.randint(0, cfg.schedule.num_train_timesteps, (o.batch_size,), generator=gen)
    loss = F.mse_loss(unet(noise_sched.add_noise(x0, noise, t), t).sample, noise)
    for g in opt.param_groups:
        g["lr"] = lr_at(step, o)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(unet.parameters(), o.grad_clip)
    opt.step()
    return loss.item()


def write_samples(ema: UNet2DModel, cfg: DDPMConfig, path: Path) -> None:
    ema.eval()
    x = ddim_sample(ema, build_ddim_scheduler(cfg.schedule), cfg.logging.sample_count, cfg.logging.sample_steps,
                    seed=1234)
    save_png(image_grid(x, int(math.ceil(math.sqrt(len(x))))), path, scale=2)
    logger.info(f"samples -> {path}")


# ---------------------------------------------------------------- export and quality figures

def isolated_ink(x: torch.Tensor) -> torch.Tensor:
    """Per image, the share of ink pixels with no ink among their 8 neighbours: speckle, not strokes."""
    ink = (x < 0).float()
    ring = torch.ones(1, 1, 3, 3)
    ring[..., 1, 1] = 0
    alone = ink * (F.conv2d(ink, ring, padding=1) == 0)
    return alone.flatten(1).sum(1) / ink.flatten(1).sum(1).clamp(min=1)


def quality_stats(samples: torch.Tensor, train: torch.Tensor, holdout: torch.Tensor) -> dict:
    """Defensible cheap figures: ink statistics, speckle and nearest-training-image distances, samples vs. holdout.

    The holdout row is the reference for real drawings: samples should have a similar ink distribution and
    nearest-neighbour distance; a much smaller sample NN distance would mean memorised training images.
    A sample counts as speckled when its isolated-ink share exceeds the largest one among the holdout drawings.
    """
    def nn_rmse(q: torch.Tensor) -> torch.Tensor:
        d = torch.cdist(q.flatten(1), train.flatten(1))
        return (d.min(1).values ** 2 / q[0].numel()).sqrt()

    ink_s, ink_h = ink_coverage(samples), ink_coverage(holdout)
    qs = torch.linspace(0, 1, 101)
    w1 = (torch.quantile(ink_s, qs) - torch.quantile(ink_h, qs)).abs().mean().item()
    nn_s, nn_h = nn_rmse(samples), nn_rmse(holdout)
    iso_s, iso_h = isolated_ink(samples), isolated_ink(holdout)
    return {"n_samples": len(samples), "n_holdout": len(holdout),
            "ink_coverage_samples_mean": ink_s.mean().item(), "ink_coverage_samples_std": ink_s.std().item(),
            "ink_coverage_holdout_mean": ink_h.mean().item(), "ink_coverage_holdout_std": ink_h.std().item(),
            "ink_coverage_wasserstein1": w1,
            "nn_rmse_samples_to_train_mean": nn_s.mean().item(), "nn_rmse_holdout_to_train_mean": nn_h.mean().item(),
            "fraction_samples_closer_to_train_than_min_holdout_nn": (nn_s < nn_h.min()).float().mean().item(),
            "isolated_ink_samples_mean": iso_s.mean().item(), "isolated_ink_holdout_mean": iso_h.mean().item(),
            "fraction_samples_speckled": (iso_s > iso_h.max()).float().mean().item()}


def export(run: Path, dest: Path, n_stats: int = 512, steps: int = 50) -> dict:
    """EMA UNet + DDIM scheduler via save_pretrained (safetensors), a sample grid and stats.json."""
    state, cfg = load_checkpoint(run / CHECKPOINT)
    ema = state["ema"].eval()
    dest.mkdir(parents=True, exist_ok=True)
    ema.save_pretrained(dest, safe_serialization=True)
    sched = build_ddim_scheduler(cfg.schedule)
    sched.save_pretrained(dest)
    samples = torch.cat([ddim_sample(ema, sched, 64, steps, seed=10_000 + i) for i in range(math.ceil(n_stats / 64))])
    save_png(image_grid(samples[:64], 8), dest / "samples.png", scale=3)
    train_x, _ = load_bitmaps(cfg.data, "train")
    holdout, _ = load_bitmaps(cfg.data, "holdout")
    stats = {"step": state["step"], "train_minutes": state["elapsed_s"] / 60, "ddim_steps": steps,
             "parameters": sum(p.numel() for p in ema.parameters()),
             **quality_stats(samples[:n_stats], train_x, holdout)}
    atomic_write_text(dest / "stats.json", json.dumps(stats, indent=2))
    logger.info(f"exported {run / CHECKPOINT} (step {state['step']}) -> {dest}: {stats}")
    return stats


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train (or resume) a run")
    t.add_argument("--config", type=Path, default=Path("configs/ddpm_quickdraw.yaml"))
    t.add_argument("--run", type=Path, default=Path("runs/ddpm_quickdraw"))
    t.add_argument("--max-steps", type=int, default=None, help="override optim.max_steps")
    t.add_argument("--max-minutes", type=float, default=None, help="override optim.max_minutes (summed over resumes)")
    e = sub.add_parser("export", help="write the EMA model, sample grid and stats in diffusers' format")
    e.add_argument("--run", type=Path, default=Path("runs/ddpm_quickdraw"))
    e.add_argument("--dest", type=Path, default=Path("weights/ddpm_quickdraw"))
    e.add_argument("--n-stats", type=int, default=512)
    args = p.parse_args(argv)
    setup_logging(args.run / "logs", name="train_ddpm")
    if args.cmd == "train":
        train(load_config(args.config, DDPMConfig), args.run, args.max_steps, args.max_minutes)
    else:
        export(args.run, args.dest, args.n_stats)


if __name__ == "__main__":
    main()
