"""Sketch fidelity and pixel L2 of any checkpoint with an encoder, against the mean-image baseline.

    python -m training.evaluate --checkpoint weights/default.pt --quickdraw ../shared/data/quickdraw

Two held-out sets, both rebuilt deterministically from the arguments, so the model card's figures are
reproduced by this one command:
- synthetic: `--synthetic N` fresh generator samples (seed `--seed`, never used in training) made into
  sketches by the training pipeline; L2 against the generator image is meaningful here.
- QuickDraw: the last `--holdout` drawing(s) of every category (the default model's generator never
  saw them), drawn with a mid-width pen at the vision work size and binarized by the table's own
  binarizer, as a pen sketch on the table would be.
The baseline answers every sketch with the same picture: the mean of the set's target images (the
constant that minimises L2).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from loguru import logger

import models
from common.config import from_dict
from common.logging import setup_logging
from installation.vision import binarize_sketch
from training.data import PenConfig, QuickDrawDataset, render_strokes
from training.grids import save_columns
from training.make_sketch_pairs import SketchPipeline, SketchPipelineConfig, sample_wplus, synthesize, to_gray_uint8
from training.metrics import SketchFidelity, pixel_l2, summarize


def pipeline_config(bundle: models.Bundle) -> SketchPipelineConfig:
    """The sketch pipeline the encoder was trained with (stored in the checkpoint's meta), else defaults."""
    stored = bundle.meta.get("pipeline")
    cfg = from_dict(SketchPipelineConfig, stored, "checkpoint meta", "pipeline") if stored else SketchPipelineConfig()
    if cfg.sketch_size != bundle.input_size:
        cfg.sketch_size = bundle.input_size
    return cfg


def synthetic_set(bundle: models.Bundle, pipeline: SketchPipeline, n: int, seed: int):
    wplus = sample_wplus(bundle, n, seed, truncation=1.0, mixing=0.0)
    target = synthesize(bundle, wplus)
    _, _, sketch = pipeline(to_gray_uint8(target))
    return sketch, target


def quickdraw_set(bundle: models.Bundle, cfg: SketchPipelineConfig, source: str, holdout: int):
    ds = QuickDrawDataset(source, bundle.output_size, 1, holdout_per_category=holdout, split="holdout")
    pen = PenConfig().scaled_to(bundle.output_size)    # every model size gets the same relative line
    width, dark = float(np.mean(pen.width)), float(np.mean(pen.darkness))
    sketches, targets = [], []
    for d in ds.drawings:
        paper = render_strokes(d["drawing"], cfg.work_size, width * cfg.work_size / bundle.output_size, dark,
                               margin=pen.margin)
        sketches.append(binarize_sketch(paper, cfg.sketch_size))
        targets.append(render_strokes(d["drawing"], bundle.output_size, width, dark, margin=pen.margin))
    target = torch.from_numpy(np.stack(targets)).float().div(127.5).sub(1).unsqueeze(1)
    if bundle.img_channels == 3:
        target = target.expand(-1, 3, -1, -1)
    return np.stack(sketches), target


@torch.no_grad()
def score(bundle: models.Bundle, fidelity: SketchFidelity, sketch: np.ndarray, target: torch.Tensor) -> dict:
    x = torch.from_numpy(sketch).float().unsqueeze(1)
    out = torch.cat([bundle.sketch_to_image(c).cpu() for c in x.split(32)])
    mean = target.mean(0, keepdim=True).expand_as(target)
    rows = {}
    for name, images in (("model", out), ("mean image", mean)):
        rows[name] = {"l2": float(pixel_l2(images, target).mean()),
                      **summarize(fidelity(sketch, to_gray_uint8(images)))}
    return {"n": len(sketch), "rows": rows, "out": out}


def table(name: str, res: dict) -> str:
    lines = [f"{name} (n = {res['n']})", "| | edge F-score ↑ | precision | recall | chamfer px ↓ | pixel L2 ↓ |",
             "|---|---|---|---|---|---|"]
    for who, r in res["rows"].items():
        lines.append(f"| {who} | {r['f_score']:.3f} | {r['precision']:.3f} | {r['recall']:.3f} | "
                     f"{r['chamfer']:.2f} | {r['l2']:.4f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--checkpoint", required=True, type=Path)
    p.add_argument("--synthetic", type=int, default=256, help="number of fresh generator samples (0: skip)")
    p.add_argument("--seed", type=int, default=777_777, help="seed of the synthetic set (not a training seed)")
    p.add_argument("--quickdraw", default="", help="QuickDraw ndjson folder for the held-out real drawings")
    p.add_argument("--holdout", type=int, default=1, help="held-out drawings per category (as in training)")
    p.add_argument("--json", type=Path, default=None, help="write the figures here")
    p.add_argument("--grid", type=Path, default=None, help="write sketch | output | target rows here")
    p.add_argument("--threads", type=int, default=0)
    args = p.parse_args(argv)
    setup_logging(level="WARNING")
    if args.threads:
        torch.set_num_threads(args.threads)
    bundle = models.load(args.checkpoint, device="cpu")
    if bundle.encoder is None:
        raise SystemExit(f"{args.checkpoint}: no encoder in this checkpoint; sketch fidelity needs one")
    cfg = pipeline_config(bundle)
    fidelity = SketchFidelity(SketchPipeline(cfg))
    results, grids = {}, []
    if args.synthetic > 0:
        results["synthetic"] = score(bundle, fidelity, *synthetic_set(bundle, SketchPipeline(cfg), args.synthetic,
                                                                     args.seed))
    if args.quickdraw:
        sketch, target = quickdraw_set(bundle, cfg, args.quickdraw, args.holdout)
        results["quickdraw_holdout"] = res = score(bundle, fidelity, sketch, target)
        pick = np.linspace(0, len(sketch) - 1, 8).astype(int)
        grids = [torch.from_numpy(sketch[pick]).unsqueeze(1), res["out"][pick], target[pick]]
    for name, res in results.items():
        print(table(name, res) + "\n")
    figures = {k: {"n": v["n"], **v["rows"]} for k, v in results.items()}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(figures, indent=2))
    if args.grid and grids:
        save_columns(args.grid, grids, [(0, 1), (-1, 1), (-1, 1)], rows=8)
        logger.info(f"grid {args.grid}")
    return figures


if __name__ == "__main__":
    main()
