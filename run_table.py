#!/usr/bin/env python3
"""The kiosk: `python run_table.py --config configs/table.yaml`, for months.

    python run_table.py [--config FILE] [--demo] [--headless] [--seconds N] [--out DIR] [--metrics-out FILE.json]

--demo        the synthetic table instead of the camera (configs/demo.yaml unless --config is given)
--headless    no window (SDL dummy driver); also chosen by itself when there is no display server
--seconds N   stop after N seconds (default: run until Q / Esc / SIGTERM)
--out DIR     contact strips (input | binarized | generated | projected) every few seconds, the
              projected frames when headless, the last frames at exit
--metrics-out the metrics JSON at exit (and at every status line): frames_captured, inferences,
              latency_ms_p50/p95 (capture of the frame where new ink was first seen -> presentation of
              the first frame showing the answer), inference_ms_p50/p95, render_fps, dropped_frames,
              errors (with errors_by_kind), state_changes, and more (installation/metrics.py)

Exit codes: 0 normal end; 2 bad config or model (the message names the key or file); 1 anything else.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

EXIT_OK, EXIT_CONFIG = 0, 2
DEMO_CONFIG = Path("configs/demo.yaml")
TABLE_CONFIG = Path("configs/table.yaml")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", type=Path, default=None, help="table YAML (default configs/table.yaml, "
                                                                "or configs/demo.yaml with --demo)")
    ap.add_argument("--demo", action="store_true", help="synthetic table instead of the camera")
    ap.add_argument("--headless", action="store_true", help="no window; frames go to --out")
    ap.add_argument("--seconds", type=float, default=None, help="stop after this many seconds")
    ap.add_argument("--out", type=Path, default=None, help="folder for contact strips and frames")
    ap.add_argument("--metrics-out", type=Path, default=None, help="metrics JSON file")
    args = ap.parse_args(argv)
    if args.seconds is not None and args.seconds <= 0:
        ap.error("--seconds must be > 0")
    return args


def fail(message: str) -> int:
    print(f"run_table: error: {message}", file=sys.stderr)
    return EXIT_CONFIG


def load_model(cfg, path: Path):
    """models.load + the checks the table needs; raises CheckpointError / ValueError with the reason."""
    import numpy as np
    import torch

    import models
    from installation.metrics import Metrics
    from installation.worker import InferenceWorker, Job

    if cfg.model.device == "cuda" and not torch.cuda.is_available():
        raise ValueError("model.device is 'cuda' but no CUDA device is available (use 'auto' or 'cpu')")
    device = None if cfg.model.device == "auto" else cfg.model.device
    bundle = models.load(path, device=device, fp16=cfg.model.fp16)
    if bundle.encoder is None or bundle.generator is None or bundle.input_size is None:
        raise ValueError(f"{path}: this checkpoint ({bundle.meta.get('format')}) has no sketch encoder; the table "
                         "needs an encoder + generator (a pSp or project-format checkpoint)")
    # One blank sketch now: a model that cannot run fails the start, not the first visitor.
    if cfg.model.threads:
        torch.set_num_threads(cfg.model.threads)      # this thread only (OpenMP): the warm-up
    s = bundle.input_size
    r = InferenceWorker(bundle, Metrics()).run_job(Job("sketch", np.ones((s, s), np.float32)))
    if not r.ok:
        raise ValueError(f"{path}: the model fails on a blank sketch: {r.error}")
    return bundle


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.headless:
        os.environ["SDL_VIDEODRIVER"] = "dummy"
    # Imported here, not at the top: `--help` and argument errors stay instant (no torch, no pygame).
    from loguru import logger

    from common.config import ConfigError
    from common.logging import setup_logging
    from hardware.profiles import load_profile
    from installation.config import check_model_file, load_table_config, resolve

    cfg_path = args.config or (DEMO_CONFIG if args.demo else TABLE_CONFIG)
    cfg_path = resolve(cfg_path) if not cfg_path.exists() else cfg_path
    try:
        cfg = load_table_config(cfg_path)
        if args.demo:
            cfg.source.kind = "synthetic"
        model_path = check_model_file(cfg, str(cfg_path))
        hardware = load_profile(resolve(cfg.hardware))
    except ConfigError as e:
        return fail(str(e))
    lc = cfg.logging
    setup_logging(resolve(lc.dir), lc.level, "table", lc.rotation, lc.retention)
    logger.info(f"config {cfg_path}, model {model_path}, source {cfg.source.kind}")

    import models
    from installation.app import TableApp, build_source

    try:
        bundle = load_model(cfg, model_path)
    except (models.CheckpointError, ValueError) as e:
        return fail(f"model.path ({model_path}): {e}")
    logger.info(f"model: {bundle.meta.get('format')} on {bundle.device}, sketch {bundle.input_size} px -> "
                f"image {bundle.output_size} px")

    try:
        app = TableApp(cfg, bundle, build_source(cfg, hardware.camera), hardware, headless=args.headless,
                       out_dir=args.out, metrics_out=args.metrics_out)
    except ConfigError as e:                      # the calibration file
        return fail(str(e))
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: app.request_quit())
    app.run(args.seconds)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
