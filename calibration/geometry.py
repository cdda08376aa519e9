"""Plane geometry shared by every calibration path: homographies, the lens model, corner order.

The lens model is the one-parameter division model (Fitzgibbon 2001),

    x_u = c + (x_d - c) / (1 + k * r_d^2),     r_d = |x_d - c| / scale,

chosen because undistorting is closed form (the runtime maps whole frames with it) and one
parameter is all that 9-25 pen dots can pin down. Barrel distortion (cheap board-camera lenses)
has k < 0. With k = 0 every function here is the identity, so an uncalibrated lens costs nothing.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def as_points(pts) -> np.ndarray:
    p = np.asarray(pts, dtype=np.float64)
    if p.ndim == 1 and p.shape[0] == 2:
        p = p[None]
    assert p.ndim == 2 and p.shape[1] == 2, f"expected points [N, 2], got shape {p.shape}"
    return p


def apply_homography(h: np.ndarray, pts) -> np.ndarray:
    """Map points [N, 2] through the 3x3 homography `h`."""
    p = as_points(pts)
    q = np.c_[p, np.ones(len(p))] @ np.asarray(h, dtype=np.float64).T
    return q[:, :2] / q[:, 2:3]


@dataclass
class Lens:
    """Division-model radial distortion of the camera (see the module docstring)."""

    center: tuple[float, float]
    scale: float
    k: float = 0.0

    def __post_init__(self):
        if not self.scale > 0:
            raise ValueError(f"lens scale must be positive, got {self.scale}")
        if not np.isfinite(self.k) or abs(self.k) > 1.0:
            raise ValueError(f"lens k must be finite and |k| <= 1, got {self.k}")

    @classmethod
    def for_image(cls, width: int, height: int, k: float = 0.0) -> Lens:
        """Center at the image center, radius normalised so the frame's half-width is 1."""
        return cls(center=(width / 2.0, height / 2.0), scale=max(width, height) / 2.0, k=float(k))

    def undistort(self, pts) -> np.ndarray:
        """Raw camera pixels -> ideal (pinhole) camera pixels."""
        p = as_points(pts)
        if self.k == 0.0:
            return p.copy()
        c = np.asarray(self.center)
        d = (p - c) / self.scale
        r2 = (d ** 2).sum(1, keepdims=True)
        return c + (p - c) / (1.0 + self.k * r2)

    def distort(self, pts) -> np.ndarray:
        """Ideal camera pixels -> raw pixels: the root of k r_u r_d^2 - r_d + r_u = 0 nearest r_u."""
        p = as_points(pts)
        if self.k == 0.0:
            return p.copy()
        c = np.asarray(self.center)
        u = (p - c) / self.scale
        ru = np.sqrt((u ** 2).sum(1, keepdims=True))
        disc = 1.0 - 4.0 * self.k * ru ** 2
        if (disc < 0).any():
            raise ValueError("point lies outside the range the lens model can distort to")
        with np.errstate(invalid="ignore", divide="ignore"):
            rd = np.where(ru > 1e-12, (1.0 - np.sqrt(disc)) / (2.0 * self.k * ru), ru)
            ratio = np.where(ru > 1e-12, rd / ru, 1.0)
        return c + (p - c) * ratio

    def undistort_maps(self, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
        """cv2.remap grids that turn a raw frame into the ideal-camera frame of the same size."""
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float64)
        src = self.distort(np.c_[xs.ravel(), ys.ravel()])
        return (src[:, 0].reshape(height, width).astype(np.float32),
                src[:, 1].reshape(height, width).astype(np.float32))


def polygon_area(pts) -> float:
    p = as_points(pts)
    x, y = p[:, 0], p[:, 1]
    return float(0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


def flatness(pts) -> float:
    """Smallest / largest singular value of the centred point cloud: 0 for points on one line."""
    p = as_points(pts)
    if len(p) < 2:
        return 0.0
    s = np.linalg.svd(p - p.mean(0), compute_uv=False)
    return float(s[-1] / s[0]) if s[0] > 0 else 0.0


def order_corners(corners, view=None) -> np.ndarray:
    """Order 4 corners TL, TR, BR, BL as seen through `view` (a points -> points map).

    The camera films the paper from below, so its image may be mirrored; ordering in projector
    space (what the visitor sees) keeps the paper's top-left where the visitor expects it.
    """
    c = as_points(corners)
    assert len(c) == 4, f"expected 4 corners, got {len(c)}"
    v = c if view is None else as_points(view(c))
    d = v - v.mean(0)
    angle = np.arctan2(d[:, 1], d[:, 0])             # image y points down: TL ~ -135 deg, then clockwise
    start = int(np.argmin(d[:, 0] + d[:, 1]))          # TL = smallest x + y
    order = np.argsort((angle - angle[start]) % (2 * np.pi))
    return c[order]


def square_corners(side: float) -> np.ndarray:
    return np.array([[0, 0], [side, 0], [side, side], [0, side]], dtype=np.float64)
