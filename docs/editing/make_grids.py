"""Regenerate the editing grids of the README (docs/editing/*.png) on a checkpoint, by default the shipped one.

    .venv/bin/python docs/editing/make_grids.py --checkpoint weights/default.pt

A documentation tool, not part of the editing library: to edit real drawings it renders held-out QuickDraw
sketches exactly as training does (training.data.render_strokes, then the runtime's one binarizer
installation.vision.binarize_sketch) and embeds them with the checkpoint's encoder; every method then runs
through `python -m editing` with fixed seeds, and the first grid of each is copied here (< 300 KB each).
Without an encoder (a bare generator) the grids edit sampled drawings instead.
"""
from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))

from common.atomic import atomic_write_text  # noqa: E402
from common.paths import shared_dir  # noqa: E402
from editing import cli  # noqa: E402
from editing.sampling import load_generator  # noqa: E402

HERE = Path(__file__).resolve().parent
MAX_BYTES = 300_000
CATEGORIES = ("cat", "house", "tree", "bicycle", "fish", "car", "flower", "face")

# (method, extra CLI arguments); the base sketch of grid i is CATEGORIES[i]
RUNS = [
    ("ganspace", ["--n-samples", "10000", "--n-directions", "4"]),
    ("sefa", ["--n-samples", "2000", "--n-directions", "4"]),
    ("resefa", ["--n-samples", "2000", "--region", "0.0,0.0,0.5,1.0", "--n-jacobians", "3",
                "--n-directions", "3"]),
    ("interfacegan", ["--n-samples", "1500", "--ratio", "0.1", "--attribute", "ink", "--condition", "ink_top"]),
    ("tensor_model", ["--rank", "intensity=2", "--levels", "3",
                      "--expression-names", "thicker,shift right,smaller"]),
    ("nrsfm", ["--n-samples", "400", "--n-basis", "2", "--epochs", "60", "--params", "theta_z,theta_y,alpha_1"]),
]


def held_out_sketches(bundle, n: int) -> torch.Tensor:
    """[n, 1, S, S] in [0, 1]: the last (never trained) drawing of CATEGORIES, binarized as at the table."""
    from installation.vision import binarize_sketch
    from training.data import read_ndjson, render_strokes

    shared = shared_dir()
    if shared is None:
        raise SystemExit("../shared/data/quickdraw is needed to render held-out sketches")
    out = []
    for cat in CATEGORIES[:n]:
        strokes = read_ndjson(shared / "data" / "quickdraw" / f"{cat}.ndjson")[-1]["drawing"]
        src = render_strokes(strokes, bundle.input_size * 2, width=5.0, darkness=1.0)
        out.append(binarize_sketch(src, bundle.input_size))
    return torch.from_numpy(np.stack(out))[:, None]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, default=REPO / "weights" / "default.pt")
    ap.add_argument("--out", type=Path, default=HERE)
    ap.add_argument("--only", nargs="*", help="methods to regenerate (default all)")
    a = ap.parse_args(argv)
    bundle = load_generator(a.checkpoint)
    work = Path(tempfile.mkdtemp(prefix="editing_docs_"))
    extra_base = []
    if bundle.encoder is not None:
        sketches = held_out_sketches(bundle, len(RUNS))
        with torch.no_grad():
            codes = bundle.encode(sketches).float().cpu().numpy()
        np.save(work / "sketches.npy", sketches.numpy())
        for i, (method, _) in enumerate(RUNS):
            np.save(work / f"base_{method}.npy", codes[i:i + 1])
    for i, (method, extra) in enumerate(RUNS):
        if a.only and method not in a.only:
            continue
        args = [method, "--checkpoint", str(a.checkpoint), "--out", str(work / method), "--n-show", "1",
                "--steps", "7", "--seed", "0", *extra]
        if bundle.encoder is not None:
            args += ["--base-latents", str(work / f"base_{method}.npy")]
            if method == "tensor_model":
                args += ["--sketches", str(work / "sketches.npy")]
        cli.main(args)
        dst = a.out / f"{method}.png"
        shutil.copyfile(work / method / f"{method}_grid_0.png", dst)
        size = dst.stat().st_size
        if size > MAX_BYTES:
            raise SystemExit(f"{dst} is {size} bytes, over the {MAX_BYTES} byte budget for README pictures")
        print(f"{dst} ({size} bytes)")
    atomic_write_text(a.out / "CHECKPOINT.txt", f"grids made from {a.checkpoint} "
                      f"({bundle.meta.get('format')}, meta {dict((k, v) for k, v in bundle.meta.items() if k != 'path')})\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
