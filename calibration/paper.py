"""Finding the sheet in the IR frame: the brightest large quadrilateral.

The corners come from straight lines fitted to the four edges (in ideal-camera coordinates when
the lens is known, where the edges really are straight), not from the contour's polygon
approximation, so they are stable to a fraction of a pixel from frame to frame; the drift check
compares them between boots.
"""
from __future__ import annotations

import cv2
import numpy as np

from calibration.errors import CalibrationError
from calibration.geometry import Lens, order_corners, polygon_area

MIN_PAPER_FRACTION = 0.05       # the sheet covers at least this much of the frame
MAX_PAPER_FRACTION = 0.95       # ... and leaves some table visible around it
MIN_CONTRAST_DN = 20


def _line(pts: np.ndarray) -> np.ndarray:
    """Total least squares line through pts: (a, b, c) with a x + b y + c = 0, |(a, b)| = 1."""
    m = pts.mean(0)
    _, _, vt = np.linalg.svd(pts - m, full_matrices=False)
    a, b = vt[1]
    return np.array([a, b, -(a * m[0] + b * m[1])])


def detect_paper(frame: np.ndarray, lens: Lens | None = None, view=None) -> np.ndarray:
    """Corners [4, 2] of the sheet in raw camera px, ordered TL, TR, BR, BL as seen through `view`
    (a raw camera px -> projector px map; None = as seen by the camera). Raises CalibrationError."""
    assert frame.ndim == 2 and frame.dtype == np.uint8, f"expected a gray uint8 frame, got {frame.dtype} {frame.shape}"
    lo, hi = np.percentile(frame[::4, ::4], [1, 99])
    if hi - lo < MIN_CONTRAST_DN:
        raise CalibrationError(f"the camera image has almost no contrast ({hi - lo:.0f} DN): is the IR lighting on, "
                               "the lens cap off, and the exposure right?")
    blur = cv2.GaussianBlur(frame, (0, 0), 2.0)
    _, mask = cv2.threshold(blur, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    # pen strokes and printed patterns are holes inside the sheet, not part of its outline
    mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((15, 15), np.uint8))
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        raise CalibrationError("no sheet found in the camera image: is the IR lighting on and the paper on the table?")
    contour = max(contours, key=cv2.contourArea)
    if cv2.contourArea(contour) < MIN_PAPER_FRACTION * frame.size:
        raise CalibrationError("the brightest region is too small to be the sheet: is the paper on the table "
                               "and inside the camera's view?")
    if cv2.contourArea(contour) > MAX_PAPER_FRACTION * frame.size:
        raise CalibrationError("the bright region fills the whole camera image: the camera must see all four "
                               "edges of the sheet, with some table around it")
    hull = cv2.convexHull(contour)
    quad = None
    for eps in (0.01, 0.02, 0.03, 0.05):
        approx = cv2.approxPolyDP(hull, eps * cv2.arcLength(hull, True), True)
        if len(approx) == 4:
            quad = approx.reshape(4, 2).astype(np.float64)
            break
    if quad is None:
        raise CalibrationError("the sheet's outline is not a quadrilateral: is a corner folded, covered, or "
                               "outside the camera's view?")
    lens = lens or Lens.for_image(frame.shape[1], frame.shape[0])
    pts = lens.undistort(contour.reshape(-1, 2).astype(np.float64))
    q = lens.undistort(quad)
    lines = []
    for i in range(4):
        a, b = q[i], q[(i + 1) % 4]
        ab = b - a
        t = ((pts - a) @ ab) / (ab @ ab)
        d = np.abs((pts - a) @ np.array([-ab[1], ab[0]])) / np.linalg.norm(ab)
        edge = pts[(t > 0.1) & (t < 0.9) & (d < 6)]           # the edge's middle, away from the corners
        if len(edge) < 10:
            raise CalibrationError("could not trace the sheet's edges; is the sheet evenly lit?")
        lines.append(_line(edge))
    corners = np.array([np.cross(lines[i - 1], lines[i]) for i in range(4)])
    corners = lens.distort(corners[:, :2] / corners[:, 2:3])
    if not np.isfinite(corners).all() or polygon_area(corners) < MIN_PAPER_FRACTION * frame.size:
        raise CalibrationError("the sheet's corners could not be located; check the lighting")
    return order_corners(corners, view)
