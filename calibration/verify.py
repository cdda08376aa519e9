"""Closed-loop check of a saved calibration: new crosshairs, new dots, how far off the map puts them.

The IR camera cannot see the projector, so the loop closes through the technician's pen: each
fresh crosshair (away from the calibration grid) is marked, the camera finds the dot, the saved
calibration maps it back to the projector, and the distance to the crosshair is the alignment
error, in pixels and millimetres. The detected ink is projected back as a ring around each dot
and as a full ink overlay, so the technician also sees the alignment on the paper.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from loguru import logger

from calibration.dots import DotParams, DotWatcher
from calibration.errors import CalibrationError
from calibration.geometry import apply_homography
from calibration.pendot import PenDotSession, wait_for_dot
from calibration.scene import Camera, Projector, Scene
from calibration.store import Calibration


@dataclass
class VerifyResult:
    targets: np.ndarray           # [K, 2] crosshairs, projector px
    predicted: np.ndarray         # [K, 2] where the calibration puts the dots
    offsets_px: np.ndarray        # [K]
    px_per_mm: float | None
    tol_mm: float

    @property
    def max_mm(self) -> float | None:
        return float(self.offsets_px.max() / self.px_per_mm) if self.px_per_mm else None

    @property
    def ok(self) -> bool:
        return self.max_mm is not None and self.max_mm <= self.tol_mm

    def summary(self) -> str:
        mm = (f" = {self.offsets_px.mean() / self.px_per_mm:.2f} / {self.max_mm:.2f} mm" if self.px_per_mm else "")
        verdict = "ok" if self.ok else f"FAIL (limit {self.tol_mm:.2f} mm): recalibrate (`python -m calibration`)"
        return (f"verify: {len(self.targets)} dots, offset mean / max {self.offsets_px.mean():.2f} / "
                f"{self.offsets_px.max():.2f} px{mm}: {verdict}")


def verify_targets(cal: Calibration, n: int = 5, seed: int = 0, inset: float = 0.15) -> np.ndarray:
    """n crosshairs at random places inside the sheet (projector px), away from its edges."""
    rng = np.random.default_rng(seed)
    return apply_homography(cal.paper_to_projector(1), rng.uniform(inset, 1 - inset, (n, 2)))


def ink_overlay(frame: np.ndarray, cal: Calibration, projector_size: tuple[int, int]) -> np.ndarray:
    """The ink the camera sees, warped into the projector framebuffer (uint8, ink = 255)."""
    blur = cv2.GaussianBlur(frame, (0, 0), 8.0).astype(np.float32)
    ink = ((blur - frame.astype(np.float32)) > 0.25 * blur).astype(np.uint8) * 255
    w, h = projector_size
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float64)
    cam = cal.projector_to_cam(np.c_[xs.ravel(), ys.ravel()]).astype(np.float32)
    return cv2.remap(ink, cam[:, 0].reshape(h, w), cam[:, 1].reshape(h, w), cv2.INTER_NEAREST,
                     borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def run_verify(projector: Projector, camera: Camera, cal: Calibration, *, n: int = 5, seed: int = 0,
               tol_mm: float = 1.0, params: DotParams | None = None, patience_frames: int = 900) -> VerifyResult:
    params = params or DotParams()
    targets = verify_targets(cal, n, seed)
    session = PenDotSession(targets)
    watcher = DotWatcher(params)
    frame = camera.read()
    watcher.rebase(frame)
    for i in range(n):
        frame = wait_for_dot(projector, camera, session, watcher, i, n, patience_frames, params)
    cam, _ = session.points()
    predicted = cal.cam_to_projector(cam)
    result = VerifyResult(targets, predicted, np.linalg.norm(predicted - targets, axis=1),
                          cal.projector_px_per_mm(), tol_mm)
    logger.info(result.summary())
    projector.show(Scene(rings=[(x, y, 8.0) for x, y in predicted], image=ink_overlay(frame, cal, projector.size),
                         lines=[result.summary(), "Each ring should sit on its dot; the ink overlay on the strokes."]))
    if not np.isfinite(result.offsets_px).all():
        raise CalibrationError("verify failed: a dot could not be mapped; recalibrate")
    return result
