"""The grid writer: layout, value mapping, labels, both tensor layouts."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from editing.grid import make_grid, save_grid, to_uint8


def test_to_uint8_maps_the_generator_range():
    x = torch.tensor([-1.0, -0.5, 0.0, 1.0, 3.0]).view(1, 1, 1, 5)
    assert to_uint8(x)[0, 0, :, 0].tolist() == [0, 64, 128, 255, 255]


def test_grid_places_each_tile_at_its_row_and_column(tmp_path):
    rows, cols, h = 2, 3, 10
    x = torch.empty(rows, cols, 1, h, h)
    for r in range(rows):
        for c in range(cols):
            x[r, c] = -1 + (r * cols + c) * 0.3          # a distinct grey per tile
    im = make_grid(x, pad=2, min_tile=10)
    assert im.mode == "L" and im.size == (cols * (h + 2) + 2, rows * (h + 2) + 2)
    a = np.asarray(im)
    for r in range(rows):
        for c in range(cols):
            y0, x0 = 2 + r * (h + 2), 2 + c * (h + 2)
            tile = a[y0:y0 + h, x0:x0 + h]
            assert (tile == to_uint8(x[r, c:c + 1])[0, 0, 0, 0]).all()
    flat = make_grid(x.reshape(6, 1, h, h), ncol=3, pad=2, min_tile=10)
    assert np.array_equal(np.asarray(flat), a)


def test_labels_enlarge_the_canvas_and_rgb_works(tmp_path):
    x = torch.zeros(2, 2, 3, 16, 16)
    plain = make_grid(x, min_tile=64)
    labelled = make_grid(x, row_labels=["PC 1", "PC 2"], col_labels=["-1", "+1"], min_tile=64)
    assert plain.mode == "RGB" and labelled.size[0] > plain.size[0] and labelled.size[1] > plain.size[1]
    p = save_grid(tmp_path / "g.png", x, row_labels=["a", "b"], min_tile=64)
    assert Image.open(p).size == make_grid(x, row_labels=["a", "b"], min_tile=64).size
    with pytest.raises(ValueError, match="row labels"):
        make_grid(x, row_labels=["a"])
    with pytest.raises(ValueError, match="ncol"):
        make_grid(x[0])
