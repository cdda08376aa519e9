"""Data sources: folders (with broken files), .npz, QuickDraw strokes; the resumable sampler."""
from __future__ import annotations

import itertools

import numpy as np
import pytest

from training.data import (EpochSampler, ImageFolderDataset, NpzDataset, QuickDrawDataset, read_ndjson,
                           render_strokes, to_tensor)


def test_folder_skips_and_counts_unreadable_images(image_folder):
    ds = ImageFolderDataset(image_folder, 32, channels=3)
    assert len(ds) == 8
    assert sorted(p.name for p in ds.skipped) == ["corrupt.png", "cut.jpg"]
    img = ds[0]
    assert img.shape == (32, 32, 3) and img.dtype == np.uint8
    assert ImageFolderDataset(image_folder, 16, channels=1)[3].shape == (16, 16, 1)


def test_folder_without_readable_images_names_the_folder(tmp_path):
    (tmp_path / "x.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=str(tmp_path)):
        ImageFolderDataset(tmp_path, 32)


def test_npz_concatenates_keys_and_inverts(npz_path):
    ds = NpzDataset(npz_path, 28, channels=1, invert=True)
    raw = np.load(npz_path)
    assert len(ds) == 12
    np.testing.assert_array_equal(ds[7][..., 0], 255 - raw["b"][1])
    assert NpzDataset(npz_path, 32, channels=3, keys=["a"])[0].shape == (32, 32, 3)
    with pytest.raises(KeyError, match="nope"):
        NpzDataset(npz_path, 28, keys=["nope"])


def test_render_strokes_polarity_width_and_darkness():
    line = [[[0, 255], [128, 128]]]  # one horizontal stroke through the middle
    thin = render_strokes(line, 64, width=1.0, darkness=1.0, margin=0.1)
    thick = render_strokes(line, 64, width=3.0, darkness=1.0, margin=0.1)
    pale = render_strokes(line, 64, width=3.0, darkness=0.5, margin=0.1)
    assert thin[0, 0] == 255 and thin[5, 32] == 255            # paper stays white
    assert thick[32, 32] < 10                                   # ink is dark on the stroke
    assert (thick < 128).sum() > 2 * (thin < 128).sum()         # width changes the inked area
    assert 110 <= pale[32, 32] <= 145                           # half darkness: mid grey
    cols = np.where((thick < 128).any(0))[0]
    assert cols.min() >= 5 and cols.max() <= 58                 # the margin is respected


def test_quickdraw_dataset_holdout_and_malformed_lines(ndjson_dir):
    assert len(read_ndjson(ndjson_dir / "things.ndjson")) == 12  # the broken line is dropped
    train = QuickDrawDataset(ndjson_dir, 32, holdout_per_category=2)
    hold = QuickDrawDataset(ndjson_dir, 32, holdout_per_category=2, split="holdout")
    assert (len(train), len(hold)) == (20, 4)
    assert sorted(d["key_id"] for d in hold.drawings) == ["10", "10", "11", "11"]  # the last two per file
    a, b = train[(3, 0)], train[(3, 0)]
    np.testing.assert_array_equal(a, b)                          # same key -> same pen, same picture
    x = to_tensor(np.stack([a, b]))
    assert x.shape == (2, 1, 32, 32) and x.min() >= -1 and x.max() <= 1


def test_quickdraw_from_shared(quickdraw_dir):
    ds = QuickDrawDataset(quickdraw_dir, 64, categories=["cat", "face"], holdout_per_category=1)
    assert len(ds) == 48
    img = ds[(0, 0)]
    assert img.shape == (64, 64, 1) and img[0, 0, 0] == 255 and img.min() < 60


def test_sampler_started_midway_equals_the_uninterrupted_stream():
    full = list(itertools.islice(iter(EpochSampler(10, seed=3)), 37))
    tail = list(itertools.islice(iter(EpochSampler(10, seed=3, start=23)), 14))
    assert tail == full[23:]
    assert sorted(i for i, e in full[:10]) == list(range(10))    # an epoch is a permutation
    ranks = [list(itertools.islice(iter(EpochSampler(10, 3, start=4, rank=r, world_size=2)), 5)) for r in (0, 1)]
    assert [k for pair in zip(*ranks) for k in pair] == full[8:18]  # ranks interleave the global stream
