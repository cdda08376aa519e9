"""Classical sketch simplification: the pencil filter's edge map -> clean single strokes of one width.

pSp cleans its pencil-filter sketches with the Simo-Serra network; without its weights we do the
part of its job that matters for the table, with morphology:
1. ink  = pixels clearly darker than the paper (Otsu's threshold, never below `min_ink`);
2. drop specks (texture, noise) smaller than `speck_frac` of the image area;
3. close gaps of up to `close_frac` of the side: the filter outlines both sides of a drawn line,
   and closing merges the two outlines back into one band; enclosed holes smaller than
   `hole_frac` of the side squared (slivers left between the outlines at junctions) are filled, so
   they do not thin into tiny loops;
4. thin the band to its 1-px centre line (Zhang-Suen) and
5. dilate it to `stroke_frac` of the side, the pen width the camera pipeline delivers.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass
class SimplifyConfig:
    min_ink: int = 40              # ink is at least this much darker than white (0..255)
    speck_frac: float = 2e-4       # components below this fraction of the image area are noise
    close_frac: float = 0.025      # closing diameter, fraction of the side (merges double outlines)
    stroke_frac: float = 0.015     # output stroke width, fraction of the side
    hole_frac: float = 0.05        # enclosed holes narrower than about this fraction of the side are filled

    def __post_init__(self):
        if not 0 <= self.min_ink < 255:
            raise ValueError(f"min_ink must be in [0, 255), got {self.min_ink}")
        for name in ("speck_frac", "close_frac", "stroke_frac", "hole_frac"):
            if not 0 <= getattr(self, name) < 0.5:
                raise ValueError(f"{name} must be in [0, 0.5), got {getattr(self, name)}")


def _ellipse(diameter: int) -> np.ndarray:
    d = max(1, int(diameter))
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (d, d))


def ink_from_edges(gray: np.ndarray, cfg: SimplifyConfig) -> np.ndarray:
    """Bool mask of dark pixels in a paper-white uint8 image, specks removed."""
    ink_level = 255 - gray
    otsu, _ = cv2.threshold(ink_level, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    mask = ink_level > max(float(otsu), float(cfg.min_ink))
    min_area = cfg.speck_frac * gray.size
    if min_area > 1 and mask.any():
        _, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        keep = stats[:, cv2.CC_STAT_AREA] >= min_area
        keep[0] = False
        mask = keep[labels]
    return mask


def fill_small_holes(mask: np.ndarray, max_area: float) -> np.ndarray:
    """Fill background components that do not touch the border and are smaller than max_area."""
    n, labels, stats, _ = cv2.connectedComponentsWithStats((~mask).astype(np.uint8), connectivity=4)
    h, w = mask.shape
    x, y, bw, bh, area = (stats[:, i] for i in range(5))
    inner = (x > 0) & (y > 0) & (x + bw < w) & (y + bh < h)
    small = inner & (area < max_area)
    small[0] = False  # label 0 is the ink itself
    return mask | small[labels]


def centre_lines(mask: np.ndarray, close_px: int, hole_area: float) -> np.ndarray:
    """Merge nearby outlines (closing, small-hole filling) and reduce the result to 1-px centre lines."""
    if close_px > 1:
        mask = cv2.morphologyEx(mask.astype(np.uint8), cv2.MORPH_CLOSE, _ellipse(close_px)) > 0
    if hole_area > 1:
        mask = fill_small_holes(mask, hole_area)
    m = mask.astype(np.uint8) * 255
    return cv2.ximgproc.thinning(m, thinningType=cv2.ximgproc.THINNING_ZHANGSUEN) > 0


def simplify_classical(gray: np.ndarray, cfg: SimplifyConfig | None = None) -> np.ndarray:
    """uint8 [H, W] pencil sketch (paper bright) -> uint8 [H, W] clean strokes: paper 255, ink 0."""
    cfg = cfg or SimplifyConfig()
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"expected a uint8 grey image [H, W], got {gray.dtype} {gray.shape}")
    side = max(gray.shape)
    lines = centre_lines(ink_from_edges(gray, cfg), round(cfg.close_frac * side), (cfg.hole_frac * side) ** 2)
    stroke = max(1, round(cfg.stroke_frac * side))
    if stroke > 1:
        lines = cv2.dilate(lines.astype(np.uint8), _ellipse(stroke)) > 0
    return np.where(lines, 0, 255).astype(np.uint8)
