"""Picture grids for progress and model cards (PIL only; no plotting libraries in the kiosk image)."""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from common.atomic import atomic_write_bytes


def to_uint8(images: torch.Tensor, value_range: tuple[float, float] = (-1.0, 1.0)) -> np.ndarray:
    """[B, C, H, W] float in value_range -> uint8 [B, H, W, C]."""
    assert images.dim() == 4 and images.shape[1] in (1, 3), images.shape
    lo, hi = value_range
    x = ((images.detach().float().cpu() - lo) / (hi - lo)).clamp(0, 1)
    return (x * 255 + 0.5).to(torch.uint8).permute(0, 2, 3, 1).numpy()


def tile(images: np.ndarray, ncol: int, pad: int = 2, fill: int = 128) -> np.ndarray:
    """uint8 [B, H, W, C] -> one uint8 [rows * (H + pad) + pad, ..., C] mosaic, row-major."""
    b, h, w, c = images.shape
    nrow = -(-b // ncol)
    out = np.full((nrow * (h + pad) + pad, ncol * (w + pad) + pad, c), fill, np.uint8)
    for i in range(b):
        r, k = divmod(i, ncol)
        out[pad + r * (h + pad):pad + r * (h + pad) + h, pad + k * (w + pad):pad + k * (w + pad) + w] = images[i]
    return out


def save_png(path: str | Path, mosaic: np.ndarray) -> Path:
    img = Image.fromarray(mosaic[..., 0] if mosaic.shape[2] == 1 else mosaic)
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return atomic_write_bytes(path, buf.getvalue())


def save_grid(path: str | Path, images: torch.Tensor, ncol: int = 8,
              value_range: tuple[float, float] = (-1.0, 1.0)) -> Path:
    return save_png(path, tile(to_uint8(images, value_range), ncol))


def save_columns(path: str | Path, columns: list[torch.Tensor], ranges: list[tuple[float, float]],
                 rows: int = 8) -> Path:
    """Side-by-side columns (e.g. sketch | output | target), one example per row, all resized to one size."""
    size = max(c.shape[-1] for c in columns)
    channels = max(c.shape[1] for c in columns)
    tiles = []
    for i in range(min(rows, columns[0].shape[0])):
        for col, rng in zip(columns, ranges):
            x = col[i:i + 1].float()
            if x.shape[-1] != size:
                x = torch.nn.functional.interpolate(x, size=(size, size), mode="nearest")
            x = ((x - rng[0]) / (rng[1] - rng[0])) * 2 - 1
            tiles.append(x.expand(-1, channels, -1, -1))
    return save_grid(path, torch.cat(tiles), ncol=len(columns))
