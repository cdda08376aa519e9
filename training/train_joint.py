"""pSp with a trainable decoder: fit encoder and generator together on (sketch, drawing) pairs.

pixel2style2pixel offers `train_decoder`; this is that mode, made the main route for CPU-only sites.
Adversarial StyleGAN2 training needs hundreds of kimg (GPU-days at museum scale); on a 2-core CPU it
reaches only a few kimg in an hour, whose samples are blobs. Starting from that generator and training
encoder + generator with a reconstruction loss converges in minutes, because every sketch comes with
the exact drawing it should become: both are rendered from the same QuickDraw strokes.

- input: the strokes drawn with a visitor's pen at the encoder's resolution, then passed through the
  runtime's own binarizer (installation.vision.binarize_sketch), exactly as camera frames are;
- target: the same strokes drawn with the collection's pen at the generator's resolution.

    python -m training.train_joint --generator runs/default_g/checkpoints/ckpt_XXXX.pt \\
        --data ../shared/data/quickdraw --out runs/default_joint --minutes 40
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from loguru import logger
from tqdm import tqdm

import models
from common.atomic import atomic_torch_save
from common.logging import setup_logging
from installation.vision import binarize_sketch
from models.psp import CompactEncoder
from training.data import QuickDrawDataset, render_strokes
from training.grids import save_columns


class SketchDrawingPairs(torch.utils.data.Dataset):
    """(binarized sketch [1, S, S] in [0, 1], drawing [1, G, G] in [-1, 1]) from one set of strokes."""

    def __init__(self, drawings: QuickDrawDataset, sketch_size: int, visitor_pen=(1.5, 3.5)):
        self.d, self.sketch_size, self.visitor_pen = drawings, sketch_size, visitor_pen

    def __len__(self) -> int:
        return len(self.d)

    def __getitem__(self, key):
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        rng = np.random.default_rng([self.d.seed, epoch, int(index)])
        strokes = self.d.drawings[index]["drawing"]
        target = self.d.render(index, rng)
        src = render_strokes(strokes, self.sketch_size * 2, width=rng.uniform(*self.visitor_pen) * 2,
                             darkness=rng.uniform(0.7, 1.0), margin=self.d.pen.margin)
        sketch = binarize_sketch(src, self.sketch_size)
        if self.d.xflip and rng.random() < 0.5:
            target, sketch = target[:, ::-1], sketch[:, ::-1]
        return (torch.from_numpy(np.ascontiguousarray(sketch))[None],
                torch.from_numpy(np.ascontiguousarray(target)).float().div(127.5).sub(1)[None])


def batches(ds, batch: int, seed: int, start: int):
    from training.data import EpochSampler

    sampler = EpochSampler(len(ds), seed, start)
    loader = torch.utils.data.DataLoader(ds, batch_size=batch, sampler=sampler, drop_last=True)
    return iter(loader)


def loss_fn(out, target, codes, reg: float):
    l2 = F.mse_loss(out, target)
    # ink pixels are few: an L1 on dark target pixels keeps thin lines from fading into the paper
    ink = (target < 0).float()
    l_ink = ((out - target).abs() * ink).sum() / ink.sum().clamp_min(1.0)
    lreg = codes.pow(2).mean()
    return l2 + 0.5 * l_ink + reg * lreg, dict(l2=l2.item(), ink=l_ink.item(), reg=lreg.item())


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", type=Path, required=True, help="StyleGAN2 checkpoint (models.load reads it)")
    ap.add_argument("--data", type=Path, required=True, help="QuickDraw .ndjson file or folder")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--sketch-size", type=int, default=128)
    ap.add_argument("--backbone", default="mobilenet_v3_small")
    ap.add_argument("--width", type=int, default=128)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--g-lr", type=float, default=1e-3)
    ap.add_argument("--reg", type=float, default=1e-3, help="weight of ||E(x)||^2 (codes stay near w_avg)")
    ap.add_argument("--holdout", type=int, default=1, help="last N drawings per category never trained on")
    ap.add_argument("--minutes", type=float, default=40.0)
    ap.add_argument("--max-steps", type=int, default=100000)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--save-every-min", type=float, default=4.0)
    a = ap.parse_args(argv)
    setup_logging(a.out / "logs", name="train_joint")
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    base = models.load(a.generator, device="cpu")
    g = base.generator.train().requires_grad_(True)
    latent_avg = base.latent_avg.clone()
    e = CompactEncoder(a.backbone, n_styles=g.n_latent, input_nc=1, style_dim=g.style_dim,
                       input_size=a.sketch_size, width=a.width)
    opt = torch.optim.Adam([{"params": e.parameters(), "lr": a.lr},
                            {"params": g.parameters(), "lr": a.g_lr}], betas=(0.9, 0.99))
    drawings = QuickDrawDataset(a.data, g.size, 1, holdout_per_category=a.holdout, xflip=True, seed=a.seed)
    ds = SketchDrawingPairs(drawings, a.sketch_size)
    state_path = a.out / "state.pt"
    step = 0
    if state_path.exists():  # exact resume: weights, optimiser, step (the sampler restarts at step * batch)
        st = torch.load(state_path, weights_only=True)
        e.load_state_dict(st["e"]); g.load_state_dict(st["g"]); opt.load_state_dict(st["opt"])
        step = st["step"]
        logger.info(f"resumed from {state_path} at step {step}")
    it = batches(ds, a.batch, a.seed, step * a.batch)
    fixed_x, fixed_y = next(batches(ds, 8, a.seed + 1, 0))
    t_end = time.monotonic() + a.minutes * 60
    t_save = time.monotonic() + a.save_every_min * 60
    bar = tqdm(total=a.max_steps, initial=step, desc="joint", dynamic_ncols=True)

    def save(final: bool = False):
        atomic_torch_save({"e": e.state_dict(), "g": g.state_dict(), "opt": opt.state_dict(), "step": step},
                          state_path)
        with torch.no_grad():
            e.eval(); g.eval()
            out, _ = g([e(fixed_x) + latent_avg], input_is_latent=True, randomize_noise=False)
            e.train(); g.train()
        save_columns(a.out / f"val_{step:06d}.png", [fixed_x, out.clamp(-1, 1), fixed_y],
                     [(0.0, 1.0), (-1.0, 1.0), (-1.0, 1.0)])   # sketch | output | target
        models.save(a.out / "model.pt", generator=g, encoder=e, latent_avg=latent_avg,
                    input_size=a.sketch_size,
                    meta={"trained_by": "training.train_joint", "steps": step, "batch": a.batch,
                          "generator_init": str(a.generator), "final": final})

    while step < a.max_steps and time.monotonic() < t_end:
        x, y = next(it)
        codes = e(x)
        out, _ = g([codes + latent_avg], input_is_latent=True, randomize_noise=False)
        loss, parts = loss_fn(out, y, codes, a.reg)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        step += 1
        bar.update(1)
        bar.set_postfix(parts)
        if time.monotonic() > t_save:
            save()
            t_save = time.monotonic() + a.save_every_min * 60
    save(final=True)
    logger.info(f"done at step {step}; model in {a.out / 'model.pt'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
