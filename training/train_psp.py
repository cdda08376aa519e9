"""Train a pSp encoder on sketch pairs: pSp(x) = G(E(x) + w_avg), the generator frozen.

    python -m training.train_psp --config configs/train_psp_default.yaml [--resume auto|none|PATH]

Loss (Richardson et al. 2021, section 3.3, with the sketch preset's weights):
    lambda_l2 * L2 + lambda_lpips * LPIPS + lambda_wnorm * ||E(x)||
  + lambda_latent * ||E(x) + w_avg - w_true||^2   (synthetic pairs know their W+; speeds up small runs)
  + lambda_dfeat * discriminator-feature L1        (needs a checkpoint that carries D)
LPIPS needs its ImageNet backbone in TORCH_HOME; nothing is downloaded: without the file the run stops
and says so, unless `lambda_lpips: 0` turns it off.

Checkpoints use the pSp layout ('state_dict' = 'encoder.*' + 'decoder.*', 'opts', 'latent_avg'),
plus optimiser and step for exact resume; models.load reads them (opts carries the compact encoder's
and the generator's arguments). Every snapshot also exports `export.pt` in the project format: the
same networks without optimiser state, which is what a table should get.
"""
from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from loguru import logger
from torch.nn import functional as F
from tqdm import tqdm

import models
from common.config import to_dict
from common.logging import setup_logging
from models.psp import PSP, CompactEncoder, GradualStyleEncoder
from training import checkpoint as ckpt_io
from training.cli import add_config_args, load_with_overrides
from training.data import EpochSampler
from training.grids import save_columns
from training.make_sketch_pairs import SketchPipeline, SketchPipelineConfig, load_pairs, to_gray_uint8
from training.metrics import SketchFidelity, pixel_l2, summarize
from training.train_stylegan2 import seed_step


@dataclass
class EncoderConfig:
    kind: Literal["compact", "irse50"] = "compact"   # compact: CPU kiosks; irse50: pSp's GradualStyleEncoder
    backbone: Literal["resnet18", "resnet34", "mobilenet_v3_small"] = "resnet18"
    width: int = 256


@dataclass
class PSPConfig:
    generator: str                      # checkpoint with the (frozen) generator, read by models.load
    pairs: str                          # folder of pairs_*.npz from training.make_sketch_pairs
    out_dir: str = "runs/psp"
    encoder: EncoderConfig = field(default_factory=EncoderConfig)
    pipeline: SketchPipelineConfig = field(default_factory=SketchPipelineConfig)  # for the fidelity metric
    seed: int = 0
    batch: int = 8
    lr: float = 1e-4
    total_steps: int = 20000
    max_minutes: float = 0.0
    n_val: int = 64                     # the last n_val pairs are validation only
    lambda_l2: float = 1.0
    lambda_lpips: float = 0.8
    lpips_net: Literal["alex", "vgg", "squeeze"] = "alex"
    lambda_wnorm: float = 0.005
    lambda_latent: float = 0.0
    lambda_dfeat: float = 0.0
    val_every: int = 500
    snapshot_every: int = 500
    keep_checkpoints: int = 3
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = 0
    log_every: int = 50

    def __post_init__(self):
        if self.batch < 1 or self.total_steps < 1 or self.n_val < 1:
            raise ValueError("batch, total_steps and n_val must be >= 1")
        if min(self.lambda_l2, self.lambda_lpips, self.lambda_wnorm, self.lambda_latent, self.lambda_dfeat) < 0:
            raise ValueError("loss weights must be >= 0")


class LPIPSWeightsMissing(RuntimeError):
    pass


def make_lpips(net: str) -> torch.nn.Module:
    """lpips.LPIPS, after checking that its ImageNet backbone is already in TORCH_HOME (no downloads)."""
    import lpips
    import torchvision

    weights = {"alex": torchvision.models.AlexNet_Weights.IMAGENET1K_V1,
               "vgg": torchvision.models.VGG16_Weights.IMAGENET1K_V1,
               "squeeze": torchvision.models.SqueezeNet1_1_Weights.IMAGENET1K_V1}[net]
    path = Path(torch.hub.get_dir()) / "checkpoints" / Path(weights.url).name
    if not path.is_file():
        raise LPIPSWeightsMissing(
            f"LPIPS ({net}) needs the ImageNet backbone weights at {path} (TORCH_HOME={torch.hub.get_dir()}), "
            f"and this machine will not download them. Copy {Path(weights.url).name} there, or turn LPIPS off "
            "explicitly with `lambda_lpips: 0` (--set lambda_lpips=0).")
    return lpips.LPIPS(net=net, verbose=False).eval().requires_grad_(False)


def build_encoder(cfg: EncoderConfig, n_styles: int, style_dim: int, input_size: int) -> torch.nn.Module:
    if cfg.kind == "irse50":
        if input_size != GradualStyleEncoder.input_size:
            raise ValueError(f"the IR-SE50 encoder takes {GradualStyleEncoder.input_size} px sketches; the pairs "
                             f"are {input_size} px (set pipeline.sketch_size when making them)")
        return GradualStyleEncoder(50, "ir_se", n_styles, input_nc=1, style_dim=style_dim)
    return CompactEncoder(cfg.backbone, n_styles, input_nc=1, style_dim=style_dim, input_size=input_size,
                          width=cfg.width)


def discriminator_features(D: torch.nn.Module, img: torch.Tensor, n_blocks: int = 3) -> list[torch.Tensor]:
    """Activations of the first residual blocks of a StyleGAN2 discriminator (D.convs)."""
    feats, x = [], img
    for block in list(D.convs)[:n_blocks + 1]:
        x = block(x)
        feats.append(x)
    return feats[1:]


class PSPTrainer:
    def __init__(self, cfg: PSPConfig):
        self.cfg = cfg
        if cfg.threads > 0:
            torch.set_num_threads(cfg.threads)
        kind = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        self.device = torch.device(kind)
        self.out = Path(cfg.out_dir)
        self.ckpt_dir = self.out / "checkpoints"
        self.lpips = None
        if cfg.lambda_lpips > 0:
            self.lpips = make_lpips(cfg.lpips_net).to(self.device)
        else:
            logger.warning("LPIPS is off (lambda_lpips = 0): the encoder trains without a perceptual loss")

        gen = models.load(cfg.generator, device=self.device, fp16=False)
        if gen.generator is None:
            raise ValueError(f"{cfg.generator}: holds no generator")
        self.D = gen.discriminator
        if cfg.lambda_dfeat > 0 and self.D is None:
            raise ValueError(f"lambda_dfeat > 0 needs a discriminator, but {cfg.generator} holds none")

        data = load_pairs(cfg.pairs)
        if len(data["sketch"]) <= cfg.n_val:
            raise ValueError(f"{cfg.pairs}: {len(data['sketch'])} pairs, not more than n_val={cfg.n_val}")
        self.data = data
        self.n_train = len(data["sketch"]) - cfg.n_val
        self.input_size = data["sketch"].shape[-1]
        G = gen.generator
        expected = (G.size, G.size, G.img_channels)
        if data["image"].shape[1:] != expected or data["wplus"].shape[1:] != (G.n_latent, G.style_dim):
            raise ValueError(f"{cfg.pairs}: pairs (image {data['image'].shape[1:]}, W+ {data['wplus'].shape[1:]}) "
                             f"were not made by this generator (image {expected}, W+ {(G.n_latent, G.style_dim)})")

        torch.manual_seed(cfg.seed)
        encoder = build_encoder(cfg.encoder, G.n_latent, G.style_dim, self.input_size)
        self.net = PSP(encoder, G, gen.latent_avg).to(self.device)
        self.net.decoder.eval().requires_grad_(False)
        self.optim = torch.optim.Adam(self.net.encoder.parameters(), lr=cfg.lr)
        self.step = 0
        self.pipeline = SketchPipeline(cfg.pipeline)
        self.fidelity = SketchFidelity(self.pipeline)

    # -------------------------------------------------------------- data

    def batch(self, idx: np.ndarray) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        d = self.data
        sketch = torch.from_numpy(d["sketch"][idx]).float().div(255).unsqueeze(1)
        image = torch.from_numpy(d["image"][idx]).permute(0, 3, 1, 2).float().div(127.5).sub(1)
        wplus = torch.from_numpy(d["wplus"][idx]).float()
        return sketch.to(self.device), image.to(self.device), wplus.to(self.device)

    # -------------------------------------------------------------- step

    def losses(self, sketch, image, wplus) -> tuple[torch.Tensor, dict[str, float], torch.Tensor]:
        cfg = self.cfg
        codes = self.net.encoder(sketch)
        pred_w = codes + self.net.latent_avg
        out, _ = self.net.decoder([pred_w], input_is_latent=True, randomize_noise=False)
        terms = {"l2": F.mse_loss(out, image), "wnorm": codes.norm(2, dim=(1, 2)).mean()}
        loss = cfg.lambda_l2 * terms["l2"] + cfg.lambda_wnorm * terms["wnorm"]
        if self.lpips is not None:
            rgb = (lambda x: x.expand(-1, 3, -1, -1)) if out.shape[1] == 1 else (lambda x: x)
            terms["lpips"] = self.lpips(rgb(out), rgb(image)).mean()
            loss = loss + cfg.lambda_lpips * terms["lpips"]
        if cfg.lambda_latent > 0:
            terms["latent"] = F.mse_loss(pred_w, wplus)
            loss = loss + cfg.lambda_latent * terms["latent"]
        if cfg.lambda_dfeat > 0:
            with torch.no_grad():
                target_feats = discriminator_features(self.D, image)
            terms["dfeat"] = sum(F.l1_loss(a, b) for a, b in zip(discriminator_features(self.D, out), target_feats))
            loss = loss + cfg.lambda_dfeat * terms["dfeat"]
        return loss, {k: v.item() for k, v in terms.items()} | {"loss": loss.item()}, out

    def train_step(self, idx: np.ndarray) -> dict[str, float]:
        seed_step(self.cfg.seed, self.step, 0)
        self.net.encoder.train()
        loss, logs, _ = self.losses(*self.batch(idx))
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        self.optim.step()
        self.step += 1
        return logs

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        self.net.encoder.eval()
        idx = np.arange(self.n_train, self.n_train + self.cfg.n_val)
        outs, l2s = [], []
        for chunk in np.array_split(idx, max(1, len(idx) // 16)):
            sketch, image, _ = self.batch(chunk)
            out = self.net(sketch)
            outs.append(out.cpu())
            l2s.append(pixel_l2(out, image).cpu())
        out = torch.cat(outs)
        sketches = self.data["sketch"][idx].astype(np.float32) / 255
        fid = summarize(self.fidelity(sketches, to_gray_uint8(out)))
        sk, img, _ = self.batch(idx[:8])
        save_columns(self.out / "val" / f"{self.step:08d}.png", [sk.cpu(), out[:8], img.cpu()],
                     [(0, 1), (-1, 1), (-1, 1)])
        return {"val_l2": float(torch.cat(l2s).mean()), **{f"val_{k}": v for k, v in fid.items()}}

    # -------------------------------------------------------------- state

    def opts(self) -> dict:
        G = self.net.decoder
        return {"encoder_type": type(self.net.encoder).__name__, "encoder_config": dict(self.net.encoder.config),
                "input_nc": 1, "label_nc": 1, "n_styles": G.n_latent, "output_size": G.size,
                "input_size": self.input_size, "start_from_latent_avg": True, "learn_in_w": False,
                "generator_config": dict(G.config), "train": to_dict(self.cfg)}

    def state(self) -> dict:
        return {"state_dict": self.net.state_dict(), "opts": self.opts(),
                "latent_avg": self.net.latent_avg.detach().cpu(), "optimizer": self.optim.state_dict(),
                "step": self.step}

    def save(self) -> Path:
        path = ckpt_io.save_checkpoint(self.ckpt_dir, self.step, self.state(), self.cfg.keep_checkpoints)
        self.export(self.out / "export.pt")
        logger.info(f"checkpoint {path}, export {self.out / 'export.pt'}")
        return path

    def export(self, path: Path, meta: dict | None = None, half: bool = False) -> Path:
        return models.save(path, generator=self.net.decoder, encoder=self.net.encoder,
                           latent_avg=self.net.latent_avg, input_size=self.input_size,
                           meta={"encoder_step": self.step, "train_psp": to_dict(self.cfg), **(meta or {})},
                           half=half)

    def resume(self, resume: str) -> None:
        found = ckpt_io.find_resume(resume, self.ckpt_dir)
        if found is None:
            return
        path, state = found
        enc_sd = {k[len("encoder."):]: v for k, v in state["state_dict"].items() if k.startswith("encoder.")}
        self.net.encoder.load_state_dict(enc_sd)
        self.optim.load_state_dict(state["optimizer"])
        self.step = int(state["step"])
        logger.info(f"resumed from {path} at step {self.step}")

    # -------------------------------------------------------------- loop

    def fit(self, max_steps: int | None = None) -> list[dict]:
        cfg = self.cfg
        end = cfg.total_steps if max_steps is None else min(cfg.total_steps, self.step + max_steps)
        keys = iter(EpochSampler(self.n_train, cfg.seed, self.step * cfg.batch))
        history, t0 = [], time.monotonic()
        bar = tqdm(total=end, initial=self.step, unit="step", dynamic_ncols=True)
        while self.step < end:
            idx = np.array([next(keys)[0] for _ in range(cfg.batch)])
            logs = self.train_step(idx)
            history.append({"step": self.step, **logs})
            bar.update(1)
            bar.set_postfix(loss=f"{logs['loss']:.4f}", l2=f"{logs['l2']:.4f}")
            if self.step % cfg.log_every == 0:
                logger.info(f"step {self.step} " + " ".join(f"{k}={v:.4f}" for k, v in logs.items()))
            timeout = cfg.max_minutes > 0 and time.monotonic() - t0 > cfg.max_minutes * 60
            if self.step % cfg.val_every == 0 or self.step == end or timeout:
                logger.info(f"validation at step {self.step}: " + " ".join(
                    f"{k}={v:.4f}" for k, v in self.validate().items()))
            if self.step % cfg.snapshot_every == 0 or self.step == end or timeout:
                self.save()
            if timeout:
                logger.info(f"max_minutes={cfg.max_minutes} reached at step {self.step}; stopping")
                break
        bar.close()
        return history


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_config_args(p)
    p.add_argument("--resume", default="auto", help="'auto' (newest checkpoint in out_dir), 'none', or a path")
    p.add_argument("--max-steps", type=int, default=None)
    args = p.parse_args(argv)
    cfg = load_with_overrides(args.config, PSPConfig, args.overrides)
    setup_logging(Path(cfg.out_dir) / "logs", name="train_psp")
    try:
        trainer = PSPTrainer(cfg)
    except LPIPSWeightsMissing as e:
        logger.error(str(e))
        raise SystemExit(2) from None
    logger.info(f"encoder {type(trainer.net.encoder).__name__} "
                f"{sum(q.numel() for q in trainer.net.encoder.parameters()) / 1e6:.2f} M params, "
                f"{trainer.n_train} training pairs, {cfg.n_val} validation pairs, device {trainer.device}")
    trainer.resume(args.resume)
    trainer.fit(args.max_steps)


if __name__ == "__main__":
    main()
