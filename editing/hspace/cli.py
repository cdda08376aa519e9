"""`python -m editing hspace`: find h-space directions on a diffusion model and write edit grids.

    python -m editing hspace --model weights/ddpm_quickdraw --method pca --out out/hspace_pca

One grid per shown sample (rows = directions, columns = gamma, in standard deviations of h_t along the
direction), plus directions.pt (the h-space steps per timestep) and summary.json (how much each
direction changes the drawings and their ink coverage at each gamma).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch
from loguru import logger

from common.atomic import atomic_torch_save, atomic_write_text
from common.logging import setup_logging
from editing.grid import save_grid
from editing.hspace.methods import (find_jacobian, find_pca, find_supervised, ink_coverage, initial_noise,
                                    record_batch, sweep)
from editing.hspace.sampling import load_model
from editing.resefa import region_mask


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m editing hspace", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", type=Path, required=True, help="diffusers folder, e.g. weights/ddpm_quickdraw")
    p.add_argument("--method", choices=["pca", "jacobian", "supervised"], required=True)
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--n-samples", type=int, default=128, help="samples whose h_t the directions are fitted on")
    p.add_argument("--n-show", type=int, default=3, help="samples drawn as grids")
    p.add_argument("--steps", type=int, default=20, help="DDIM steps")
    p.add_argument("--k", type=int, default=3, help="directions per method (pca, jacobian)")
    p.add_argument("--gammas", type=lambda s: [float(v) for v in s.split(",")], default=[-3, -2, -1, 0, 1, 2, 3])
    p.add_argument("--t-min", type=int, default=None,
                   help="edit h_t for timesteps t >= this (default: 500 for pca/jacobian, 0 for supervised)")
    p.add_argument("--t-max", type=int, default=None,
                   help="... and t <= this (default: 1000 for pca/jacobian, 600 for supervised)")
    p.add_argument("--t-jacobian", type=int, default=700, help="timestep whose Jacobian gives the directions")
    p.add_argument("--iters", type=int, default=50, help="power iterations (jacobian)")
    p.add_argument("--region", type=lambda s: tuple(float(v) for v in s.split(",")), default=None,
                   help="x0,y0,x1,y1 in fractions of the image: Jacobian of that output region only")
    p.add_argument("--ratio", type=float, default=0.5, help="supervised: top/bottom share by ink coverage")
    p.add_argument("--orthogonal-to-pca", type=int, default=1,
                   help="supervised: add the mean difference made orthogonal to the first N PCA axes (0: off)")
    p.add_argument("--eta", type=float, default=0.0, help="0: DDIM; > 0: stochastic with stored noise")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.n_show > args.n_samples:
        p.error(f"--n-show {args.n_show} exceeds --n-samples {args.n_samples}")
    supervised = args.method == "supervised"
    args.t_min = args.t_min if args.t_min is not None else (0 if supervised else 500)
    args.t_max = args.t_max if args.t_max is not None else (600 if supervised else 1000)
    if 0.0 not in args.gammas:
        p.error("--gammas must include 0 (the unedited column every other one is compared with)")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging()
    torch.manual_seed(args.seed)
    try:
        unet, scheduler = load_model(args.model)
    except FileNotFoundError as e:
        logger.error(str(e))
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    traj = record_batch(unet, scheduler, args.n_samples, args.steps, args.seed)
    shown = list(range(args.n_show))
    window = (args.t_min, args.t_max)
    if args.method == "pca":
        directions = find_pca(traj, args.k, window)
    elif args.method == "jacobian":
        size = unet.config.sample_size
        region = torch.from_numpy(region_mask(size, size, rect=args.region)) if args.region else None
        directions = find_jacobian(unet, traj, args.k, window, args.t_jacobian, shown, args.iters, region)
    else:
        scores = ink_coverage(traj.x0)
        others = find_pca(traj, args.orthogonal_to_pca, window) if args.orthogonal_to_pca else []
        directions = find_supervised(traj, scores, window, args.ratio, others)
    x_T = initial_noise(args.n_samples, unet.config.sample_size, args.seed)[shown]
    edits = torch.stack([sweep(unet, scheduler, x_T, args.steps, d, args.gammas, args.eta, args.seed + 1)
                         for d in directions], 1)  # [show, rows, G, 1, H, W]
    write_outputs(args, directions, edits)
    return 0


def write_outputs(args: argparse.Namespace, directions, edits: torch.Tensor) -> None:
    col_labels = [f"{g:+g}" for g in args.gammas]
    row_labels = [d.name for d in directions]
    for i, grid in enumerate(edits):
        path = args.out / f"{args.method}_sample{i}.png"
        save_grid(path, grid, row_labels=row_labels, col_labels=col_labels)
        logger.info(f"grid -> {path}")
    zero = args.gammas.index(0.0)
    summary = {"method": args.method, "gammas": args.gammas, "steps": args.steps, "window": [args.t_min, args.t_max],
               "samples": args.n_samples, "eta": args.eta, "directions": {}}
    for r, d in enumerate(directions):
        x = edits[:, r]
        summary["directions"][d.name] = {
            "rms_change": [(x[:, j] - x[:, zero]).pow(2).mean().sqrt().item() for j in range(len(args.gammas))],
            "ink_coverage": [ink_coverage(x[:, j]).mean().item() for j in range(len(args.gammas))]}
    atomic_write_text(args.out / "summary.json", json.dumps(summary, indent=2))
    atomic_torch_save({"method": args.method, "window": [args.t_min, args.t_max], "model": str(args.model),
                       "directions": {d.name: d.steps for d in directions}}, args.out / "directions.pt")
    logger.info(f"summary.json and directions.pt -> {args.out}")
