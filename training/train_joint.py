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

Growing: `--size 128` with a 64 px `--generator` builds a 128 px generator that keeps every layer the
two sizes share (the 64 px trunk is identical in the rosinality layout; only the last block and its
toRGB are new), and an encoder that keeps the backbone and the heads whose shapes still fit. This is
progressive growing's idea used for a fine-tune: the coarse structure is already learnt, so the new
layers only have to learn the finer detail.
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
from training.data import PenConfig, QuickDrawDataset, render_strokes
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


def loss_fn(out, target, codes, reg: float, ink_weight: float = 0.5):
    l2 = F.mse_loss(out, target)
    # ink pixels are few: an L1 on dark target pixels keeps thin lines from fading into the paper
    ink = (target < 0).float()
    l_ink = ((out - target).abs() * ink).sum() / ink.sum().clamp_min(1.0)
    lreg = codes.pow(2).mean()
    return l2 + ink_weight * l_ink + reg * lreg, dict(l2=l2.item(), ink=l_ink.item(), reg=lreg.item())


def load_matching(net: torch.nn.Module, state: dict) -> list[str]:
    """Copy every tensor of `state` whose name and shape `net` shares; return the names left new."""
    own = net.state_dict()
    take = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    own.update(take)
    net.load_state_dict(own)
    return [k for k in own if k not in take]


def init_encoder(e: CompactEncoder, state: dict) -> list[str]:
    """Load `state` where shapes fit; a style head that now has more styles keeps the old ones' rows.

    The head's linear layer lists its styles one after another, and a grown generator's extra styles
    come last: the old rows go first and the new ones start at zero, i.e. at w_avg, so the pair starts
    from exactly the old model's picture (see grow_generator).
    """
    new = load_matching(e, state)
    own = e.state_dict()
    with torch.no_grad():
        for name in list(new):
            old = state.get(name)
            if name.endswith(("linear.weight", "linear.bias")) and old is not None \
                    and old.shape[1:] == own[name].shape[1:] and old.shape[0] < own[name].shape[0]:
                own[name].zero_()[: old.shape[0]] = old
                new.remove(name)
    e.load_state_dict(own)
    return new


def grow_generator(g, size: int):
    """A generator of `size` px with `g`'s architecture and every weight the two sizes share."""
    from models.stylegan2 import Generator

    if size == g.size:
        return g
    if size < g.size:
        raise SystemExit(f"--size {size} is smaller than the generator's {g.size} px: only growing is supported")
    grown = Generator(**{**g.config, "size": size})
    new = load_matching(grown, g.state_dict())
    # The output is the sum of every block's toRGB over the upsampled lower ones (skip architecture):
    # with the new toRGBs at zero, the grown generator starts as the old one's picture, upsampled.
    with torch.no_grad():
        for name, t in grown.named_parameters():
            if name in new and name.startswith("to_rgbs.") and name.endswith("conv.weight"):
                t.zero_()
    logger.info(f"generator grown {g.size} -> {size} px: {len(new)} new tensors ({', '.join(new[:6])} ...)")
    return grown


def build_pair(generator, latent_avg: torch.Tensor, size: int, backbone: str, sketch_size: int, width: int):
    """(generator grown to `size`, in training mode; a fresh CompactEncoder for it; w_avg per layer)."""
    g = grow_generator(generator, size).train().requires_grad_(True)
    # w_avg is one vector repeated per layer; a grown generator just has more layers
    latent_avg = latent_avg[:1].expand(g.n_latent, -1).clone()
    e = CompactEncoder(backbone, n_styles=g.n_latent, input_nc=1, style_dim=g.style_dim,
                       input_size=sketch_size, width=width)
    return g, e, latent_avg


def make_optimizer(e: torch.nn.Module, g: torch.nn.Module, lr: float, g_lr: float) -> torch.optim.Adam:
    return torch.optim.Adam([{"params": e.parameters(), "lr": lr},
                             {"params": g.parameters(), "lr": g_lr}], betas=(0.9, 0.99))


def train_step(e, g, latent_avg, opt, x, y, reg: float, ink_weight: float) -> dict[str, float]:
    """One fine-tune step on a batch (sketch x, drawing y); returns the loss parts."""
    codes = e(x)
    out, _ = g([codes + latent_avg], input_is_latent=True, randomize_noise=False)
    loss, parts = loss_fn(out, y, codes, reg, ink_weight)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return parts


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--generator", type=Path, required=True, help="StyleGAN2 checkpoint (models.load reads it)")
    ap.add_argument("--data", type=Path, required=True, help="QuickDraw .ndjson file or folder")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--size", type=int, default=None, help="grow the generator to this size (default: keep)")
    ap.add_argument("--init-encoder", type=Path, default=None,
                    help="checkpoint whose encoder initialises this one where shapes fit (e.g. the previous default)")
    ap.add_argument("--ink-weight", type=float, default=0.5, help="weight of the L1 on the target's ink pixels")
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
    return ap


def main(argv=None) -> int:
    a = build_parser().parse_args(argv)
    setup_logging(a.out / "logs", name="train_joint")
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)

    base = models.load(a.generator, device="cpu")
    g, e, latent_avg = build_pair(base.generator, base.latent_avg, a.size or base.generator.size, a.backbone,
                                  a.sketch_size, a.width)
    if a.init_encoder is not None:
        new = init_encoder(e, models.load(a.init_encoder, device="cpu").encoder.state_dict())
        logger.info(f"encoder initialised from {a.init_encoder}; {len(new)} tensors new: {new}")
    opt = make_optimizer(e, g, a.lr, a.g_lr)
    drawings = QuickDrawDataset(a.data, g.size, 1, pen=PenConfig().scaled_to(g.size), holdout_per_category=a.holdout,
                                xflip=True, seed=a.seed)
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
                          "generator_init": str(a.generator), "encoder_init": str(a.init_encoder),
                          "final": final})

    while step < a.max_steps and time.monotonic() < t_end:
        x, y = next(it)
        parts = train_step(e, g, latent_avg, opt, x, y, a.reg, a.ink_weight)
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
