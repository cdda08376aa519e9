"""The filter-off calibration: with the 850 nm filter swung away the camera sees the projector,
so Gray-code stripes give a camera -> projector correspondence at every lit camera pixel.

Own encoder/decoder rather than cv2.structured_light.GrayCodePattern: its decoder
(`getProjPixel`) answers one camera pixel per Python call, about a million calls per frame here,
while the numpy decode below handles the whole frame at once. Each bit is read by comparing the
pattern with its inverse, which cancels the paper's albedo and the ambient light.
"""
from __future__ import annotations

import numpy as np
from loguru import logger

from calibration.errors import CalibrationError
from calibration.fiducial import wait_for_key
from calibration.fit import fit_camera_to_target
from calibration.pendot import CalibrationResult, finish
from calibration.scene import Camera, Projector, Scene


def n_bits(size: int) -> int:
    return max(1, int(np.ceil(np.log2(size))))


def gray_code(v: np.ndarray) -> np.ndarray:
    return v ^ (v >> 1)


def gray_decode(g: np.ndarray) -> np.ndarray:
    v = g.copy()
    shift = 1
    while (g >> shift).any():
        v ^= g >> shift
        shift += 1
    return v


def patterns(projector_size: tuple[int, int]) -> list[tuple[str, int, int, np.ndarray]]:
    """(axis, bit, inverted, image uint8 [H, W]) for every column bit and row bit, MSB first."""
    w, h = projector_size
    out = []
    for axis, size in (("x", w), ("y", h)):
        code = gray_code(np.arange(size))
        for bit in reversed(range(n_bits(size))):
            stripe = ((code >> bit) & 1).astype(np.uint8) * 255
            img = np.broadcast_to(stripe[None, :] if axis == "x" else stripe[:, None], (h, w))
            out.append((axis, bit, 0, np.ascontiguousarray(img)))
            out.append((axis, bit, 1, np.ascontiguousarray(255 - img)))
    return out


def decode(captures: dict[tuple[str, int, int], np.ndarray], projector_size: tuple[int, int],
           min_contrast: float = 10.0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Projector column and row (float, pixel centres) under every camera pixel, and a valid mask.

    A pixel is valid where every bit's pattern/inverse difference exceeds `min_contrast` DN and
    the decoded code is inside the projector frame.
    """
    w, h = projector_size
    coords, valid = {}, None
    for axis, size in (("x", w), ("y", h)):
        code = None
        for bit in reversed(range(n_bits(size))):
            d = captures[(axis, bit, 0)].astype(np.int16) - captures[(axis, bit, 1)].astype(np.int16)
            b = (d > 0).astype(np.int32)
            code = b if code is None else (code << 1) | b
            ok = np.abs(d) >= min_contrast
            valid = ok if valid is None else valid & ok
        value = gray_decode(code)
        valid &= value < size
        coords[axis] = value.astype(np.float64) + 0.5
    return coords["x"], coords["y"], valid


def correspondences(px: np.ndarray, py: np.ndarray, valid: np.ndarray, step: int = 6) -> tuple[np.ndarray, np.ndarray]:
    """Camera pixel centres on a `step` grid with their decoded projector positions."""
    ys, xs = np.mgrid[0:valid.shape[0]:step, 0:valid.shape[1]:step]
    ok = valid[ys, xs]
    cam = np.c_[xs[ok], ys[ok]].astype(np.float64)
    return cam, np.c_[px[ys, xs][ok], py[ys, xs][ok]]


def run_filter_off(projector: Projector, camera: Camera, *, paper_mm: tuple[float, float], settle_frames: int = 3,
                   ransac_px: float = 3.0, min_coverage: float = 0.45, max_loo_mm: float = 1.0) -> CalibrationResult:
    wait_for_key(projector, camera, Scene(lines=["Swing the 850 nm filter away from the camera lens; press Enter."],
                                          request="remove-filter"))
    captures = {}
    pats = patterns(projector.size)
    for k, (axis, bit, inv, img) in enumerate(pats):
        projector.show(Scene(image=img))
        for _ in range(settle_frames):                 # projector and camera latency
            camera.read()
        captures[(axis, bit, inv)] = camera.read()
        if k % 8 == 0:
            logger.info(f"Gray code: pattern {k + 1}/{len(pats)}")
    px, py, valid = decode(captures, projector.size)
    if valid.mean() < 0.05:
        raise CalibrationError(f"only {valid.mean():.1%} of the camera image decoded: is the filter really off, "
                               "the projector on and the room dark enough? Nothing was saved.")
    cam, proj = correspondences(px, py, valid)
    logger.info(f"Gray code: {valid.mean():.0%} of the camera pixels decoded, fitting {len(cam)} points")
    fit = fit_camera_to_target(cam, proj, valid.shape[::-1], ransac_px=ransac_px, leave_one_out=False)
    frame = wait_for_key(projector, camera, Scene(lines=["Swing the filter back in front of the lens; press Enter."],
                                                  request="restore-filter"))
    return finish(fit, cam, proj, frame, projector_size=projector.size,
                  paper_mm=paper_mm, method="filter-off", min_coverage=min_coverage, max_loo_mm=max_loo_mm)
