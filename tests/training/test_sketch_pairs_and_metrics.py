"""Sketch pairs end in the table's binarizer; the classical simplifier; the sketch-fidelity metric."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import models
from installation.vision import binarize_sketch
from models.stylegan2 import Generator
from training.data import render_strokes
from training.make_sketch_pairs import (SketchPairsConfig, SketchPipeline, SketchPipelineConfig, load_pairs,
                                        make_pairs)
from training.metrics import SketchFidelity, line_fidelity, pixel_l2, skeleton
from training.simplify import simplify_classical
from training.sketch_filter import pencil_sketch

SQUARE = [[[40, 215, 215, 40, 40], [40, 40, 215, 215, 40]]]


def _tiny_generator_checkpoint(path):
    torch.manual_seed(0)
    g = Generator(32, style_dim=32, n_mlp=2, channel_max=16, img_channels=1)
    models.save(path, generator=g, latent_avg=g.mean_latent(256)[0].detach())
    return path


def test_make_sketch_pairs_shards_pass_the_binarizer_unchanged(tmp_path):
    ckpt = _tiny_generator_checkpoint(tmp_path / "g.pt")
    cfg = SketchPairsConfig(generator=str(ckpt), out_dir=str(tmp_path / "pairs"), n=10, shard_size=4, batch=4,
                            mixing=0.5, pipeline=SketchPipelineConfig(work_size=64, sketch_size=32))
    paths = make_pairs(cfg)
    assert [p.name for p in paths] == ["pairs_00000.npz", "pairs_00001.npz", "pairs_00002.npz"]
    assert (tmp_path / "pairs" / "preview.png").is_file()
    pairs = load_pairs(tmp_path / "pairs")
    assert pairs["sketch"].shape == (10, 32, 32) and pairs["sketch"].dtype == np.uint8
    assert pairs["image"].shape == (10, 32, 32, 1) and pairs["wplus"].shape == (10, 8, 32)
    assert set(np.unique(pairs["sketch"])) <= {0, 255}
    agreement = []
    for s in pairs["sketch"]:
        again = binarize_sketch(s, 32)            # the runtime binarizer keeps polarity and size
        assert again.shape == (32, 32) and again.dtype == np.float32
        assert (again == 1).mean() > 0.5 and (s == 255).mean() > 0.5   # paper = 1 = the majority
        agreement.append((again == s / 255.0).mean())
    print("binarizer agreement", agreement)
    assert min(agreement) > 0.9
    # the stored W+ reproduces the stored image through the generator (fixed noise)
    bundle = models.load(ckpt, device="cpu")
    img = bundle.synthesize(torch.from_numpy(pairs["wplus"][:2]))
    stored = torch.from_numpy(pairs["image"][:2]).permute(0, 3, 1, 2).float() / 127.5 - 1
    assert (img.clamp(-1, 1) - stored).abs().max() <= 1 / 127.5 + 1e-6
    # an interrupted run keeps finished shards (same bytes) and makes only what is missing
    before = paths[0].read_bytes()
    paths[2].unlink()
    make_pairs(cfg)
    assert paths[0].read_bytes() == before and paths[2].is_file()


def test_classical_simplifier_turns_double_outlines_into_one_centred_stroke():
    drawing = render_strokes(SQUARE, 256, width=8, darkness=1.0, margin=0.1)
    pencil = pencil_sketch(drawing)
    truth = skeleton(drawing < 128)                       # the centre line of the drawn stroke
    raw = skeleton(pencil < 200)                          # the filter's two outlines
    simple = skeleton(simplify_classical(pencil) < 128)
    f_raw = line_fidelity(raw, truth, tol=2).precision
    f_simple = line_fidelity(simple, truth, tol=2)
    assert f_raw < 0.5                                    # outlines lie beside the stroke ...
    assert f_simple.f_score > 0.95 and f_simple.chamfer < 1.0  # ... the simplified line on it
    assert simplify_classical(np.full((64, 64), 255, np.uint8)).min() == 255  # blank paper stays blank


def test_line_fidelity_planted_cases():
    a = np.zeros((64, 64), bool)
    a[20, 10:50] = True
    perfect = line_fidelity(a, a, tol=1.5)
    assert (perfect.f_score, perfect.chamfer) == (1.0, 0.0)
    shifted = line_fidelity(np.roll(a, 5, axis=0), a, tol=1.5)
    assert shifted.f_score == 0.0 and shifted.chamfer == pytest.approx(5.0)
    near = line_fidelity(np.roll(a, 1, axis=0), a, tol=1.5)
    assert near.f_score == 1.0 and near.chamfer == pytest.approx(1.0)
    half = a.copy()
    half[20, 30:50] = False                               # output draws only half of the sketch line
    partial = line_fidelity(half, a, tol=1.5)
    # sketch pixels x = 10..29 are drawn, x = 30 lies within tol of x = 29: 21 of 40 recalled
    assert partial.precision == 1.0 and partial.recall == pytest.approx(21 / 40)
    empty = line_fidelity(np.zeros_like(a), a, tol=1.5)
    assert empty.f_score == 0.0 and empty.chamfer == pytest.approx(np.hypot(64, 64))
    assert line_fidelity(np.zeros_like(a), np.zeros_like(a), 1.5).f_score == 1.0


def test_sketch_fidelity_of_images_identical_vs_shifted():
    cfg = SketchPipelineConfig(work_size=128, sketch_size=64)
    metric = SketchFidelity(SketchPipeline(cfg))
    drawing = render_strokes(SQUARE, 64, width=2, darkness=1.0, margin=0.1)
    _, _, sketch = SketchPipeline(cfg)(drawing[None])
    same = metric(sketch, drawing[None])[0]
    moved = metric(sketch, np.roll(drawing, 6, axis=1)[None])[0]
    assert same.f_score == 1.0 and same.chamfer == 0.0
    again = binarize_sketch((sketch[0] * 255).astype(np.uint8), 64)   # line art: the binarizer is a no-op
    assert (again == sketch[0]).mean() > 0.995 and (sketch[0] == 0).sum() > 100
    # a sideways shift moves the vertical sides 6 px off; the horizontal ones slide along themselves
    assert moved.f_score < 0.5 and 2.5 < moved.chamfer < 6


def test_pixel_l2():
    x = torch.zeros(2, 1, 4, 4)
    y = x.clone()
    y[1] = 0.5
    assert pixel_l2(x, y).tolist() == [0.0, 0.25]
