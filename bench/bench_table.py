#!/usr/bin/env python3
"""Benchmark of the table loop: the headless demo for N seconds, end-to-end numbers.

    python bench/bench_table.py [--seconds 30] [--config configs/demo.yaml] [--model PATH | --random-stand-in]

Measures what a visitor feels: ink-to-light latency (capture time of the frame where new ink was first
seen -> presentation of the first frame showing the model's answer), inference time, render fps, and
the vision and render cost per frame. Prints them and replaces this script's own section of
bench/RESULTS.md ('## Table loop (bench/bench_table.py)'); other sections are left as they are.

--random-stand-in: when the shipped model is not there yet, a RANDOMLY INITIALISED network with the
default model's architecture (configs/train_default.yaml's generator, a CompactEncoder) stands in;
the results say so. Timing does not depend on the weights' values.
"""
from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from results_md import write_section  # noqa: E402

os.environ["SDL_VIDEODRIVER"] = "dummy"

SECTION = "## Table loop (bench/bench_table.py)"


def random_stand_in(path: Path, input_size: int = 128) -> str:
    """Save a randomly initialised generator + encoder with the default model's architecture."""
    import torch
    import yaml

    import models
    from models.psp import CompactEncoder
    from models.stylegan2 import Generator

    preset = REPO / "configs/train_default.yaml"
    g_cfg = {"size": 64, "style_dim": 128, "n_mlp": 4, "channel_multiplier": 2, "channel_max": 64, "img_channels": 1}
    if preset.is_file():
        g_cfg.update(yaml.safe_load(preset.read_text()).get("model", {}))
    torch.manual_seed(0)
    g = Generator(**g_cfg)
    e = CompactEncoder("resnet18", n_styles=g.n_latent, input_nc=1, style_dim=g.style_dim, input_size=input_size)
    with torch.no_grad():
        latent_avg = g.mean_latent(4096)[0]
    models.save(path, generator=g, encoder=e, latent_avg=latent_avg, input_size=input_size,
                meta={"note": "randomly initialised stand-in for benchmarking only"})
    return (f"randomly initialised stand-in: Generator({', '.join(f'{k}={v}' for k, v in g_cfg.items())}) + "
            f"CompactEncoder(resnet18, input_size={input_size})")


def run(args) -> dict:
    import torch

    from common.logging import setup_logging
    from hardware.profiles import load_profile
    from installation.app import TableApp, build_source
    from installation.config import load_table_config, resolve
    from run_table import load_model

    cfg = load_table_config(args.config)
    cfg.source.kind = "synthetic"
    cfg.logging.dir = None
    setup_logging(None, "WARNING")
    with tempfile.TemporaryDirectory() as tmp:
        if args.random_stand_in:
            model_path = Path(tmp) / "stand_in.pt"
            model_label = random_stand_in(model_path)
        else:
            model_path = resolve(args.model or cfg.model.path)
            if not model_path.is_file():
                sys.exit(f"bench_table: model {model_path} not found; give --model or --random-stand-in")
            model_label = str(model_path.relative_to(REPO) if model_path.is_relative_to(REPO) else model_path)
        bundle = load_model(cfg, model_path)
    hardware = load_profile(resolve(cfg.hardware))
    load_before = os.getloadavg()
    app = TableApp(cfg, bundle, build_source(cfg, hardware.camera), hardware, headless=True,
                   out_dir=args.out)
    app.run(args.seconds)
    s = app.metrics.summary()
    s.update(model=model_label, device=str(bundle.device), torch_threads=cfg.model.threads or torch.get_num_threads(),
             load_before=load_before, load_after=os.getloadavg(), cpus=os.cpu_count(),
             cpu=platform.processor() or platform.machine(),
             config=str(Path(args.config).resolve().relative_to(REPO)) if Path(args.config).resolve().is_relative_to(REPO)
             else str(args.config),
             blend=f"{cfg.blend.mode} ({cfg.blend.steps} image(s) per answer)",
             input_size=bundle.input_size, output_size=bundle.output_size, seconds_run=args.seconds,
             target_fps=cfg.display.fps)
    return s


def fmt(v, unit=" ms") -> str:
    return "n/a" if v is None else f"{v:.0f}{unit}"


def section(s: dict, command: str) -> str:
    return "\n".join([
        SECTION,
        "",
        f"Measured {dt.date.today().isoformat()} with `{command}`: the headless demo loop "
        f"({s['config']}, synthetic table, {s['blend']}) for {s['seconds_run']:.0f} s on {s['device']}, "
        f"{s['cpus']} CPU core(s) ({s['cpu']}), {s['torch_threads']} inference thread(s); "
        f"load average {s['load_before'][0]:.1f} before, {s['load_after'][0]:.1f} after (other jobs share the "
        f"machine). Model: {s['model']}, sketch {s['input_size']} px -> image {s['output_size']} px.",
        "",
        "| metric | value |",
        "|---|---|",
        f"| ink-to-light latency p50 / p95 (first frame showing the answer) | {fmt(s['latency_ms_p50'])} / "
        f"{fmt(s['latency_ms_p95'])} ({s['latency_samples']} answers) |",
        f"| ... until the transition is complete, p50 / p95 | {fmt(s['latency_full_ms_p50'])} / "
        f"{fmt(s['latency_full_ms_p95'])} |",
        f"| inference per answer p50 / p95 | {fmt(s['inference_ms_p50'])} / {fmt(s['inference_ms_p95'])} |",
        f"| render fps (target {s['target_fps']:.0f}) | {s['render_fps']:.1f} |",
        f"| vision per frame p50 | {fmt(s['vision_ms_p50'])} |",
        f"| render (blend, look, warp, present) per frame p50 / p95 | {fmt(s['render_ms_p50'])} / "
        f"{fmt(s['render_ms_p95'])} |",
        f"| frames captured / dropped (newer frame arrived first) | {s['frames_captured']} / {s['dropped_frames']} |",
        f"| inferences / errors / state changes | {s['inferences']} / {s['errors']} / {s['state_changes']} |",
        "",
        "Latency includes the ink's persistence check (3 sightings outside the hand), the scheduler's minimum "
        "interval, inference and the wait for the next display frame; it is measured from the capture time of "
        "the frame where the ink was first seen.",
        "",
    ])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--config", type=Path, default=REPO / "configs/demo.yaml")
    ap.add_argument("--model", type=Path, default=None, help="checkpoint (default: the config's model.path)")
    ap.add_argument("--random-stand-in", action="store_true",
                    help="benchmark a randomly initialised model with the default architecture")
    ap.add_argument("--out", type=Path, default=None, help="also write contact strips here")
    ap.add_argument("--results", type=Path, default=REPO / "bench/RESULTS.md")
    ap.add_argument("--no-write", action="store_true", help="print only")
    args = ap.parse_args(argv)
    s = run(args)
    command = "python bench/bench_table.py " + " ".join(a for a in (argv or sys.argv[1:]))
    text = section(s, command.strip())
    print(text)
    if not args.no_write:
        write_section(args.results, text, SECTION)
        print(f"written to {args.results}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
