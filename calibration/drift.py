"""Boot-time drift check: is the sheet (and so the camera) where it was at calibration?

A bumped camera or a sheet taped down elsewhere moves the paper corners in the camera image; the
projected drawing would then land beside the strokes. The runtime calls `check_drift` on its first
frame and shows the warning to the technician instead of silently drawing off target.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass

import numpy as np

from calibration.errors import CalibrationError
from calibration.paper import detect_paper
from calibration.store import Calibration


@dataclass
class DriftResult:
    ok: bool
    offset_px: float | None          # largest corner displacement, camera px (None: sheet not found)
    corner_offsets_px: list[float]   # TL, TR, BR, BL
    message: str


def check_drift(frame_gray: np.ndarray, cal: Calibration, tol_px: float = 4.0) -> DriftResult:
    """Compare the sheet's corners in `frame_gray` with `cal.paper_corners_cam`."""
    try:
        found = detect_paper(frame_gray, cal.lens)
    except CalibrationError as e:
        return DriftResult(False, None, [], f"drift check: sheet not found ({e}); the projection may be "
                                            "misaligned. Check the paper, then run `python -m calibration verify`.")
    stored = np.asarray(cal.paper_corners_cam, dtype=np.float64)
    # pair corners by proximity, whatever order the detector returned them in
    best = min(itertools.permutations(range(4)),
               key=lambda perm: np.linalg.norm(found[list(perm)] - stored, axis=1).sum())
    d = np.linalg.norm(found[list(best)] - stored, axis=1)
    worst = float(d.max())
    if worst <= tol_px:
        return DriftResult(True, worst, d.tolist(), f"drift check: sheet corners within {worst:.1f} px of the "
                                                     f"calibration (tolerance {tol_px:.1f} px)")
    names = ["top-left", "top-right", "bottom-right", "bottom-left"]
    corner = names[int(d.argmax())]
    same_shift = float(np.ptp(found[list(best)] - stored, axis=0).max()) < tol_px
    cause = ("the whole sheet moved (re-tape it where it was) or the camera was bumped"
             if same_shift else "the sheet is rotated, lifted or replaced by one of another size")
    return DriftResult(False, worst, d.tolist(),
                       f"drift check: the sheet's {corner} corner is {worst:.1f} px from where it was at calibration "
                       f"(tolerance {tol_px:.1f} px): {cause}. Put it back or recalibrate "
                       "(`python -m calibration`), then `python -m calibration verify`.")
