"""Sketch/image training pairs from a generator, the way pSp makes them, ending in the table's binarizer.

    python -m training.make_sketch_pairs --config configs/train_pairs_default.yaml

For each sample: z -> W+ (kept) -> G image -> grey at the vision work size -> pSp's pencil filter ->
simplification (the Simo-Serra network when `simplifier` weights are given, else the classical
simplifier in training/simplify.py) -> installation.vision.binarize_sketch, the very function that
turns camera frames into sketches, so the encoder trains on inputs that look like what the camera
delivers. Shards `pairs_<k>.npz` hold:
    sketch uint8 [N, S, S] (paper 255, ink 0) · image uint8 [N, H, W, C] · wplus float32 [N, n_latent, style_dim]
Finished shards are kept, so an interrupted run continues where it stopped.
"""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import torch
from loguru import logger
from tqdm import tqdm

import models
from common.atomic import atomic_savez
from common.logging import setup_logging
from installation.vision import binarize_sketch
from training.cli import add_config_args, load_with_overrides
from training.grids import save_png, tile
from training.simplify import SimplifyConfig, simplify_classical
from training.sketch_filter import pencil_sketch, rgb_to_gray


@dataclass
class SketchPipelineConfig:
    work_size: int = 256            # the side the camera pipeline binarizes at (vision work_size)
    sketch_size: int = 128          # the encoder's input side
    simplify: SimplifyConfig = field(default_factory=SimplifyConfig)

    def __post_init__(self):
        if self.work_size < 32 or self.sketch_size < 8:
            raise ValueError(f"work_size >= 32 and sketch_size >= 8 expected, got {self.work_size}, "
                             f"{self.sketch_size}")


@dataclass
class SketchPairsConfig:
    generator: str                  # checkpoint with the generator (anything models.load reads)
    out_dir: str
    n: int = 10000
    shard_size: int = 1000
    batch: int = 32
    seed: int = 0
    truncation: float = 1.0         # < 1 pulls W towards latent_avg (cleaner, less varied images)
    mixing: float = 0.0             # probability that a sample mixes two W (more varied W+ for the encoder)
    simplifier: str = ""            # Simo-Serra weights (.pth); empty: the classical simplifier
    pipeline: SketchPipelineConfig = field(default_factory=SketchPipelineConfig)
    device: str = "cpu"
    threads: int = 0

    def __post_init__(self):
        if self.n < 1 or self.shard_size < 1 or self.batch < 1:
            raise ValueError("n, shard_size and batch must be >= 1")


# ------------------------------------------------------------------------------------------ the pipeline


def to_gray_uint8(images: torch.Tensor) -> np.ndarray:
    """Generator output [B, C, H, W] in [-1, 1] -> uint8 grey [B, H, W] (cv2's luma for RGB)."""
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8)
    x = x.permute(0, 2, 3, 1).numpy()
    return rgb_to_gray(x) if x.shape[-1] == 3 else x[..., 0]


def resize_batch(gray: np.ndarray, size: int) -> np.ndarray:
    if gray.shape[1:] == (size, size):
        return gray
    interp = cv2.INTER_CUBIC if size > gray.shape[1] else cv2.INTER_AREA
    return np.stack([cv2.resize(g, (size, size), interpolation=interp) for g in gray])


class SketchPipeline:
    """uint8 grey images -> (pencil, simplified, sketch) with the project's one binarizer at the end."""

    def __init__(self, cfg: SketchPipelineConfig, simplifier: torch.nn.Module | None = None):
        self.cfg, self.simplifier = cfg, simplifier

    def simplify(self, pencil: np.ndarray) -> np.ndarray:
        if self.simplifier is None:
            return np.stack([simplify_classical(p, self.cfg.simplify) for p in pencil])
        with torch.no_grad():
            x = torch.from_numpy(pencil).float().div(255).unsqueeze(1)
            y = self.simplifier.simplify(x.to(next(self.simplifier.parameters()).device))
        return (y.squeeze(1).clamp(0, 1).mul(255).add(0.5).to(torch.uint8).cpu().numpy())

    def __call__(self, gray: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        assert gray.ndim == 3 and gray.dtype == np.uint8, (gray.shape, gray.dtype)
        pencil = pencil_sketch(resize_batch(gray, self.cfg.work_size))
        simplified = self.simplify(pencil)
        sketch = np.stack([binarize_sketch(s, self.cfg.sketch_size) for s in simplified])
        return pencil, simplified, sketch


# ------------------------------------------------------------------------------------------ sampling


def sample_wplus(bundle: models.Bundle, n: int, seed: int, truncation: float, mixing: float) -> torch.Tensor:
    """n W+ latents from a seeded generator: mapped z, optional two-style mixing, truncation to latent_avg."""
    G = bundle.generator
    gen = torch.Generator().manual_seed(seed)
    z = torch.randn(2, n, G.style_dim, generator=gen)
    mix = torch.rand(n, generator=gen) < mixing
    cut = torch.randint(1, G.n_latent, (n,), generator=gen)
    with torch.no_grad():
        w = G.style(z.view(-1, G.style_dim).to(bundle.device)).view(2, n, G.style_dim).cpu()
    layer = torch.arange(G.n_latent).view(1, -1)
    second = (mix.view(-1, 1) & (layer >= cut.view(-1, 1))).unsqueeze(-1)
    wplus = torch.where(second, w[1].unsqueeze(1), w[0].unsqueeze(1))
    avg = bundle.latent_avg.float().cpu().unsqueeze(0)
    return avg + truncation * (wplus - avg)


def synthesize(bundle: models.Bundle, wplus: torch.Tensor, batch: int = 32) -> torch.Tensor:
    with torch.no_grad():
        return torch.cat([bundle.synthesize(w.to(bundle.device)).float().cpu() for w in wplus.split(batch)])


def make_pairs(cfg: SketchPairsConfig) -> list[Path]:
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    bundle = models.load(cfg.generator, device=cfg.device, fp16=False)
    if bundle.generator is None:
        raise ValueError(f"{cfg.generator}: holds no generator")
    simplifier = models.load(cfg.simplifier, device=cfg.device, fp16=False).simplifier if cfg.simplifier else None
    logger.info(f"simplifier: {'network ' + cfg.simplifier if simplifier is not None else 'classical (morphology)'}")
    pipeline = SketchPipeline(cfg.pipeline, simplifier)
    out = Path(cfg.out_dir)
    n_shards = math.ceil(cfg.n / cfg.shard_size)
    paths = []
    for k in tqdm(range(n_shards), unit="shard", desc="sketch pairs"):
        path = out / f"pairs_{k:05d}.npz"
        paths.append(path)
        if path.is_file():
            logger.info(f"{path} exists: kept")
            continue
        count = min(cfg.shard_size, cfg.n - k * cfg.shard_size)
        wplus = sample_wplus(bundle, count, cfg.seed * 100_003 + k, cfg.truncation, cfg.mixing)
        images = synthesize(bundle, wplus, cfg.batch)
        gray = to_gray_uint8(images)
        pencil, simplified, sketch = pipeline(gray)
        image_u8 = ((images.clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()
        atomic_savez(path, sketch=(sketch * 255).astype(np.uint8), image=image_u8, wplus=wplus.numpy())
        if k == 0:
            write_preview(out / "preview.png", gray[:8], pencil[:8], simplified[:8], sketch[:8], cfg.pipeline)
    return paths


def write_preview(path: Path, gray, pencil, simplified, sketch, cfg: SketchPipelineConfig) -> Path:
    """One row per sample: generated image | pencil filter | simplified | binarized sketch."""
    s = cfg.work_size
    cols = [resize_batch(gray, s), pencil, simplified, resize_batch((sketch * 255).astype(np.uint8), s)]
    rows = np.stack([c[i] for i in range(len(gray)) for c in cols])[..., None]
    return save_png(path, tile(rows, ncol=4))


def load_pairs(directory: str | Path) -> dict[str, np.ndarray]:
    """All shards of a pairs folder concatenated: sketch, image, wplus."""
    files = sorted(Path(directory).glob("pairs_*.npz"))
    if not files:
        raise FileNotFoundError(f"{directory}: no pairs_*.npz shards (run training.make_sketch_pairs first)")
    parts = {"sketch": [], "image": [], "wplus": []}
    for f in files:
        with np.load(f) as z:
            missing = [k for k in parts if k not in z.files]
            if missing:
                raise KeyError(f"{f}: shard lacks arrays {missing}; it holds {z.files}")
            for k in parts:
                parts[k].append(z[k])
    return {k: np.concatenate(v) for k, v in parts.items()}


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p)
    args = p.parse_args(argv)
    cfg = load_with_overrides(args.config, SketchPairsConfig, args.overrides)
    setup_logging(Path(cfg.out_dir) / "logs", name="make_sketch_pairs")
    paths = make_pairs(cfg)
    logger.info(f"{len(paths)} shard(s) in {cfg.out_dir}; preview {Path(cfg.out_dir) / 'preview.png'}")


if __name__ == "__main__":
    main()
