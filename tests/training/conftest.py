"""Tiny data sets and configs shared by the training tests (32 px, a few steps, CPU, one thread)."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.config import from_dict
from training.train_stylegan2 import StyleGAN2Config


@pytest.fixture(autouse=True)
def _one_thread(one_thread):
    """Other engineers share the two cores; one thread also keeps results bitwise reproducible."""


def write_ndjson(path: Path, n: int = 12, seed: int = 0) -> Path:
    """Random QuickDraw-format drawings (strokes of 0..255 ints), one malformed line at the end."""
    rng = np.random.default_rng(seed)
    lines = []
    for i in range(n):
        strokes = []
        for _ in range(int(rng.integers(1, 4))):
            k = int(rng.integers(2, 6))
            strokes.append([rng.integers(0, 256, k).tolist(), rng.integers(0, 256, k).tolist()])
        lines.append(json.dumps({"word": "thing", "recognized": bool(i % 5), "key_id": str(i), "drawing": strokes}))
    lines.append('{"word": "broken", "drawing": [[[1, 2], [3]]]}')
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def ndjson_dir(tmp_path) -> Path:
    d = tmp_path / "qd"
    d.mkdir()
    write_ndjson(d / "things.ndjson", 12, 0)
    write_ndjson(d / "others.ndjson", 12, 1)
    return d


@pytest.fixture
def image_folder(tmp_path) -> Path:
    """Eight 40x48 RGB PNGs, one empty 'corrupt.png', one truncated JPEG."""
    d = tmp_path / "images"
    (d / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(8):
        Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(d / ("sub" if i % 2 else ".") / f"{i}.png")
    (d / "corrupt.png").write_bytes(b"")
    Image.fromarray(rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)).save(d / "cut.jpg")
    data = (d / "cut.jpg").read_bytes()
    (d / "cut.jpg").write_bytes(data[: len(data) // 2])
    return d


@pytest.fixture
def npz_path(tmp_path) -> Path:
    rng = np.random.default_rng(0)
    p = tmp_path / "bitmaps.npz"
    np.savez(p, a=rng.integers(0, 256, (6, 28, 28), dtype=np.uint8), b=rng.integers(0, 256, (6, 28, 28), dtype=np.uint8))
    return p


def tiny_config(out_dir: Path, source: Path, channels: int = 1, **overrides) -> StyleGAN2Config:
    data = {
        "data": {"source": str(source)},
        "model": {"size": 32, "style_dim": 32, "n_mlp": 2, "channel_max": 16, "img_channels": channels},
        "out_dir": str(out_dir), "batch": 4, "total_kimg": 1.0, "snapshot_kimg": 0.008, "sample_kimg": 0.008,
        "n_sample": 4, "ema_kimg": 0.01, "d_reg_every": 2, "g_reg_every": 2, "path_reg": 2.0, "device": "cpu",
        "log_every": 1000,
    }
    data.update(overrides)
    return from_dict(StyleGAN2Config, data, "test")
