"""Image grids for edits: rows = directions (or samples), columns = steps; written as PNG.

Generic over image tensors in the generator's range [-1, 1]: [R, K, C, H, W] (rows x columns) or a flat
[N, C, H, W] with `ncol`; C = 1 (drawings) or 3. Optional row and column labels are drawn in margins.
"""
from __future__ import annotations

import io
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

from common.atomic import atomic_write_bytes

__all__ = ["to_uint8", "make_grid", "save_grid"]


def to_uint8(images) -> np.ndarray:
    """[N, C, H, W] in [-1, 1] (tensor or array) -> uint8 [N, H, W, C]."""
    x = images.detach().float().cpu().numpy() if isinstance(images, torch.Tensor) else np.asarray(images, np.float32)
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"images must be [N, 1 or 3, H, W], got shape {x.shape}")
    x = np.nan_to_num(x, nan=0.0)
    return np.round((np.clip(x, -1, 1) + 1) * 127.5).astype(np.uint8).transpose(0, 2, 3, 1)


def _font(size: int) -> ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):   # Pillow built without FreeType: the fixed bitmap font
        return ImageFont.load_default()


def make_grid(images, ncol: int | None = None, row_labels: Sequence[str] | None = None,
              col_labels: Sequence[str] | None = None, pad: int = 2, min_tile: int = 96) -> Image.Image:
    """A PIL image of the grid; tiles smaller than `min_tile` are enlarged by an integer factor (nearest)."""
    x = images.detach().cpu() if isinstance(images, torch.Tensor) else torch.as_tensor(np.asarray(images))
    if x.ndim == 5:
        rows, cols = x.shape[:2]
        x = x.reshape(rows * cols, *x.shape[2:])
    elif x.ndim == 4:
        if ncol is None:
            raise ValueError("a flat [N, C, H, W] batch needs ncol")
        cols = ncol
        rows = -(-x.shape[0] // cols)
    else:
        raise ValueError(f"images must be [R, K, C, H, W] or [N, C, H, W], got shape {tuple(x.shape)}")
    if row_labels is not None and len(row_labels) != rows:
        raise ValueError(f"{len(row_labels)} row labels for {rows} rows")
    if col_labels is not None and len(col_labels) != cols:
        raise ValueError(f"{len(col_labels)} column labels for {cols} columns")
    tiles = to_uint8(x)
    h, w, c = tiles.shape[1:]
    factor = max(1, -(-min_tile // max(h, w)))
    th, tw = h * factor, w * factor
    font = _font(max(10, min(th // 8, 16)))
    measure = ImageDraw.Draw(Image.new("L", (1, 1)))
    text_h = measure.textbbox((0, 0), "Ag", font=font)[3]
    left = 0 if row_labels is None else max(int(measure.textlength(s, font=font)) for s in row_labels) + 2 * pad + 4
    top = 0 if col_labels is None else text_h + 2 * pad + 2
    mode = "L" if c == 1 else "RGB"
    # light grey gutters: drawings are white paper, a white gutter would merge neighbouring tiles
    canvas = Image.new(mode, (left + cols * (tw + pad) + pad, top + rows * (th + pad) + pad),
                       215 if mode == "L" else (215, 215, 215))
    for i, tile in enumerate(tiles):
        r, k = divmod(i, cols)
        im = Image.fromarray(tile[..., 0] if c == 1 else tile, mode)
        if factor > 1:
            im = im.resize((tw, th), Image.NEAREST)
        canvas.paste(im, (left + pad + k * (tw + pad), top + pad + r * (th + pad)))
    draw = ImageDraw.Draw(canvas)
    ink = 0 if mode == "L" else (0, 0, 0)
    for r, label in enumerate(row_labels or []):
        draw.text((pad, top + pad + r * (th + pad) + (th - text_h) // 2), label, fill=ink, font=font)
    for k, label in enumerate(col_labels or []):
        x0 = left + pad + k * (tw + pad) + (tw - int(draw.textlength(label, font=font))) // 2
        draw.text((x0, pad), label, fill=ink, font=font)
    return canvas


def save_grid(path: str | Path, images, **kwargs) -> Path:
    """make_grid(images, **kwargs) written as an optimised PNG, atomically."""
    buf = io.BytesIO()
    make_grid(images, **kwargs).save(buf, format="PNG", optimize=True)
    return atomic_write_bytes(path, buf.getvalue())
