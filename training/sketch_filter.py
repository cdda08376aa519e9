"""pSp's pencil-sketch filter (scripts/generate_sketch_data.py), bit-exact, vectorised over a batch.

pSp makes its face->sketch training pairs by running this filter and then the Simo-Serra
simplifier. We re-implement the OpenCV calls in integer numpy so a whole batch of images is
filtered in one pass; every step reproduces OpenCV's own integer arithmetic, so the result equals
`cv2` byte for byte (tests check this against the reference fixture and against cv2 directly):

    b     = GaussianBlur(gray, (3, 3), 0)                      # [1 2 1]/4 separable, round half up
    e(i)  = Sobel(i, CV_8U, 0, 1) | Sobel(i, CV_8U, 1, 0)       # negative slopes saturate to 0
    edges = addWeighted(e(b), 0.75, e(255 - b), 0.75, 0)        # round half to even, saturate
    out   = 255 - edges

All borders are OpenCV's default BORDER_REFLECT_101, which is numpy's 'reflect' pad mode.
"""
from __future__ import annotations

import numpy as np

# cv2.COLOR_RGB2GRAY on uint8 is fixed point with 15 fraction bits (coefficients sum to 2**15);
# checked exhaustively over all 2**24 colours against opencv 5.0.0.
_GRAY_SHIFT = 15
_GRAY_RGB = (9798, 19235, 3735)


def _as_batch(img: np.ndarray, name: str) -> tuple[np.ndarray, bool]:
    if img.dtype != np.uint8:
        raise TypeError(f"{name} must be uint8, got {img.dtype}")
    if img.ndim == 2:
        return img[None], True
    if img.ndim == 3:
        return img, False
    raise ValueError(f"{name} must be [H, W] or [B, H, W], got shape {img.shape}")


def rgb_to_gray(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB [..., 3] -> uint8 grey [...], equal to cv2.cvtColor(rgb[..., ::-1], cv2.COLOR_BGR2GRAY)."""
    if rgb.dtype != np.uint8 or rgb.shape[-1] != 3:
        raise ValueError(f"rgb must be uint8 [..., 3], got {rgb.dtype} {rgb.shape}")
    x = rgb.astype(np.int32)
    r, g, b = _GRAY_RGB
    y = x[..., 0] * r + x[..., 1] * g + x[..., 2] * b + (1 << (_GRAY_SHIFT - 1))
    return (y >> _GRAY_SHIFT).astype(np.uint8)


def _separable_3x3(x: np.ndarray, ky: tuple[int, int, int], kx: tuple[int, int, int]) -> np.ndarray:
    """Correlate int32 [B, H, W] with the outer product ky x kx, BORDER_REFLECT_101."""
    p = np.pad(x, ((0, 0), (1, 1), (1, 1)), mode="reflect")
    h = kx[0] * p[:, :, :-2] + kx[1] * p[:, :, 1:-1] + kx[2] * p[:, :, 2:]
    return ky[0] * h[:, :-2] + ky[1] * h[:, 1:-1] + ky[2] * h[:, 2:]


def _gaussian_blur_3x3(x: np.ndarray) -> np.ndarray:
    # Sigma 0 at ksize 3 gives the binomial [1 2 1]/4; OpenCV's bit-exact 8U path rounds half up.
    s = _separable_3x3(x, (1, 2, 1), (1, 2, 1))
    return (s + 8) >> 4


def _sobel_or(x: np.ndarray) -> np.ndarray:
    dy = _separable_3x3(x, (-1, 0, 1), (1, 2, 1))
    dx = _separable_3x3(x, (1, 2, 1), (-1, 0, 1))
    return np.clip(dy, 0, 255) | np.clip(dx, 0, 255)


def pencil_sketch(gray: np.ndarray) -> np.ndarray:
    """pSp's sketch(gray): uint8 [H, W] or [B, H, W] -> uint8 of the same shape (paper 255, lines dark)."""
    batch, single = _as_batch(gray, "gray")
    if min(batch.shape[1:]) < 2:
        raise ValueError(f"gray must be at least 2x2 pixels for the 3x3 filters, got shape {gray.shape}")
    b = _gaussian_blur_3x3(batch.astype(np.int32))
    e0 = _sobel_or(b)
    e1 = _sobel_or(255 - b)
    # 0.75 * (e0 + e1) is a multiple of 0.25, exact in float64; OpenCV's cvRound rounds ties to even,
    # as np.rint does.
    edges = np.clip(np.rint(0.75 * (e0 + e1)), 0, 255).astype(np.int32)
    out = (255 - edges).astype(np.uint8)
    return out[0] if single else out
