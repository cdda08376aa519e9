"""Finding the sheet in the IR frame: the large quadrilateral that reflects more IR than the table.

The IR LEDs under the table seldom light the sheet evenly (a 3:1 fall-off across it plus the lens's
vignetting is normal), so the dim corner of the sheet can be darker than the bright part of the
table beside it, and no single grey level separates the two. What does hold everywhere is the ratio:
paper reflects about three times what the frosted table does, and the light varies smoothly. So:

1. Flatten: fit a low-order polynomial to the gradient of the log frame, leaving out the sharp
   steps (the sheet's outline, ink, the edges of a hand's shadow), and divide the frame by its
   exponential. Fitting the gradient rather than the grey levels needs no idea yet of which pixels
   are paper, and the unknown constant cancels: only reflectance ratios matter below.
2. Segment the flattened frame with one Otsu threshold; lines through the largest region's outline
   along the four longest sides of its convex hull give a first quadrilateral.
3. Refine each edge to a fraction of a pixel: across the edge's middle part, the 50 % point of the
   step in the flattened frame (the area under the normalised profile), then a trimmed line fit.
   A hand's shadow darkens paper and table alike, so the step there is still found; profiles
   without a clear paper-to-table step (ink on the edge, the border of the shadow) are dropped.

The lines are fitted in ideal-camera coordinates when the lens is known, where the edges really are
straight, so the corners are stable to a fraction of a pixel from frame to frame; the drift check
compares them between boots. `bench/bench_calibration.py --paper` measures the detector from even
light to a 4:1 gradient with vignetting, ink and a hand (bench/RESULTS.md).
"""
from __future__ import annotations

import cv2
import numpy as np

from calibration.errors import CalibrationError
from calibration.geometry import Lens, order_corners, polygon_area

MIN_PAPER_FRACTION = 0.05       # the sheet covers at least this much of the frame
MAX_PAPER_FRACTION = 0.95       # ... and leaves some table visible around it
MIN_CONTRAST_DN = 20
MIN_SHEET_RATIO = 1.3           # flattened paper / table (~3 on the table; a bare table's noise gives ~1.03)
LIGHT_DEGREE = 3                # of the log-illumination polynomial: gradient + vignetting, with room to spare
LIGHT_GRID_PX = 160             # the illumination is fitted on the frame shrunk to about this width
EDGE_HALF_PX = 8.0              # profiles across an edge reach this far to each side
EDGE_STEP_PX = 2.0              # ... and are taken this far apart along it
EDGE_REFINE_PASSES = 2          # the second pass starts from the first's (sub-pixel) corners


# ----------------------------------------------------------------------------------------------
# 1. flatten the illumination


def _monomials(degree: int) -> list[tuple[int, int]]:
    """Exponents (i, j) of x^i y^j up to `degree`, without the constant (the gradient cannot see it)."""
    return [(i, j) for i in range(degree + 1) for j in range(degree + 1 - i) if i + j > 0]


def _poly(coef: np.ndarray, x: np.ndarray, y: np.ndarray, degree: int) -> np.ndarray:
    return sum(c * x ** i * y ** j for c, (i, j) in zip(coef, _monomials(degree)))


def _gradient_basis(x: np.ndarray, y: np.ndarray, degree: int) -> tuple[np.ndarray, np.ndarray]:
    """d/dx and d/dy of every monomial at the points (x, y): [N, n_monomials] each."""
    dx = [i * x ** max(i - 1, 0) * y ** j for i, j in _monomials(degree)]
    dy = [j * x ** i * y ** max(j - 1, 0) for i, j in _monomials(degree)]
    return np.stack(dx, -1), np.stack(dy, -1)


def _robust_lstsq(a: np.ndarray, b: np.ndarray, use: np.ndarray, rounds: int = 4) -> np.ndarray:
    """Least squares over the rows `use`, refitted `rounds` times over the rows within 3 sigma (MAD)."""
    for _ in range(rounds):
        coef = np.linalg.lstsq(a[use], b[use], rcond=None)[0]
        r = np.abs(a @ coef - b)
        use = r < 3 * 1.4826 * np.median(r[use]) + 1e-9
    return coef


def log_illumination(frame: np.ndarray, degree: int = LIGHT_DEGREE) -> np.ndarray:
    """log of the light falling on each pixel, up to a constant (float32, frame's shape)."""
    h, w = frame.shape
    shrink = max(1, round(max(w, h) / LIGHT_GRID_PX))
    small = cv2.resize(frame, (w // shrink, h // shrink), interpolation=cv2.INTER_AREA)
    logs = cv2.GaussianBlur(np.log(np.maximum(small.astype(np.float32), 1.0)), (0, 0), 1.0)
    gx = cv2.Sobel(logs, cv2.CV_32F, 1, 0, ksize=3, scale=1 / 8)[2:-2, 2:-2].ravel()   # per small pixel;
    gy = cv2.Sobel(logs, cv2.CV_32F, 0, 1, ksize=3, scale=1 / 8)[2:-2, 2:-2].ravel()   # frame border dropped
    sh, sw = logs.shape
    scale = max(sw, sh) / 2.0                       # x, y in about [-1, 1]: a well-conditioned basis
    yy, xx = np.mgrid[0:sh, 0:sw].astype(np.float64)
    x, y = (xx - (sw - 1) / 2) / scale, (yy - (sh - 1) / 2) / scale
    bx, by = _gradient_basis(x[2:-2, 2:-2].ravel(), y[2:-2, 2:-2].ravel(), degree)
    a, b = np.concatenate([bx, by]) / scale, np.concatenate([gx, gy]).astype(np.float64)
    # the sharp steps (sheet outline, ink, shadow borders) are outliers: start without the steepest
    coef = _robust_lstsq(a, b, np.abs(b) < 4 * np.median(np.abs(b)) + 1e-9)
    light = _poly(coef, x, y, degree).astype(np.float32)
    return cv2.resize(light, (w, h), interpolation=cv2.INTER_LINEAR)


def flatten_illumination(frame: np.ndarray) -> np.ndarray:
    """The frame divided by the fitted illumination: proportional to reflectance (float32)."""
    return frame.astype(np.float32) * np.exp(-log_illumination(frame))


# ----------------------------------------------------------------------------------------------
# 2. a first quadrilateral


def _check_contrast(frame: np.ndarray) -> None:
    """A dark or washed-out frame (lighting off, lens cap on) is told apart from a missing sheet."""
    lo, hi = np.percentile(frame[::4, ::4], [1, 99])
    if hi - lo < MIN_CONTRAST_DN:
        raise CalibrationError(f"the camera image has almost no contrast ({hi - lo:.0f} DN): is the IR lighting on, "
                               "the lens cap off, and the exposure right?")


def _sheet_mask(flat: np.ndarray) -> np.ndarray:
    """uint8 mask of the bright (paper) class of the flattened frame; raises when there are no two classes."""
    blur = cv2.GaussianBlur(flat, (0, 0), 2.0)
    top = float(np.percentile(blur[::4, ::4], 99))
    u8 = np.clip(blur * (200.0 / max(top, 1e-6)), 0, 255).astype(np.uint8)
    _, mask = cv2.threshold(u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    paper, table = u8[mask > 0], u8[mask == 0]
    # a frame of bare table flattens to noise, which Otsu still splits in two: demand a real step
    if not len(paper) or not len(table) or paper.mean() < MIN_SHEET_RATIO * max(float(table.mean()), 1.0):
        raise CalibrationError("no sheet found in the camera image: is the IR lighting on and the paper on the table?")
    # pen strokes and printed patterns are holes inside the sheet, not part of its outline
    return cv2.morphologyEx(mask, cv2.MORPH_CLOSE, np.ones((15, 15), np.uint8))


def _sheet_contour(mask: np.ndarray) -> np.ndarray:
    contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    if not contours:
        raise CalibrationError("no sheet found in the camera image: is the IR lighting on and the paper on the table?")
    contour = max(contours, key=cv2.contourArea)
    if cv2.contourArea(contour) < MIN_PAPER_FRACTION * mask.size:
        raise CalibrationError("the brightest region is too small to be the sheet: is the paper on the table "
                               "and inside the camera's view?")
    if cv2.contourArea(contour) > MAX_PAPER_FRACTION * mask.size:
        raise CalibrationError("the bright region fills the whole camera image: the camera must see all four "
                               "edges of the sheet, with some table around it")
    return contour


def _drop_straight_vertices(poly: np.ndarray, min_turn_deg: float = 12.0) -> np.ndarray:
    """Remove the vertices where the outline turns by less than min_turn_deg (one side split in two)."""
    while len(poly) > 4:
        d = np.roll(poly, -1, axis=0) - poly                         # side i runs from vertex i to i + 1
        ang = np.degrees(np.arctan2(d[:, 1], d[:, 0]))
        turn = np.abs((ang - np.roll(ang, 1) + 180) % 360 - 180)     # at vertex i, between sides i - 1 and i
        i = int(np.argmin(turn))
        if turn[i] >= min_turn_deg:
            break
        poly = np.delete(poly, i, axis=0)
    return poly


def _hull_sides(contour: np.ndarray) -> list[np.ndarray]:
    """The sheet's four sides as segments [2, 2] (raw px, in order around the outline): the four longest
    sides of a polygon approximating the contour's convex hull. Where a hand's shadow bites a corner
    off, the hull bridges the bite with a short side, which is left out; the two sides beside it still
    meet at the true corner."""
    hull = cv2.convexHull(contour)
    poly = cv2.approxPolyDP(hull, 0.01 * cv2.arcLength(hull, True), True).reshape(-1, 2).astype(np.float64)
    poly = _drop_straight_vertices(poly)
    if len(poly) < 4:
        raise CalibrationError("the sheet's outline is not a quadrilateral: is a corner folded, covered, or "
                               "outside the camera's view?")
    sides = [np.array([poly[i], poly[(i + 1) % len(poly)]]) for i in range(len(poly))]
    longest = sorted(np.argsort([-np.linalg.norm(sd[1] - sd[0]) for sd in sides])[:4])
    return [sides[i] for i in longest]


def _line(pts: np.ndarray) -> np.ndarray:
    """Total least squares line through pts: (a, b, c) with a x + b y + c = 0, |(a, b)| = 1."""
    m = pts.mean(0)
    _, _, vt = np.linalg.svd(pts - m, full_matrices=False)
    a, b = vt[1]
    return np.array([a, b, -(a * m[0] + b * m[1])])


def _trimmed_line(pts: np.ndarray, rounds: int = 3) -> np.ndarray:
    """_line, refitted without the points beyond 3 sigma (MAD, at least 0.5 px) of the last fit."""
    use = np.ones(len(pts), bool)
    for _ in range(rounds):
        if use.sum() < 10:
            raise CalibrationError("could not trace the sheet's edges; is the sheet evenly lit?")
        line = _line(pts[use])
        r = np.abs(pts @ line[:2] + line[2])
        use = r < max(3 * 1.4826 * float(np.median(r[use])), 0.5)
    return line


def _intersect(lines: list[np.ndarray]) -> np.ndarray:
    """Corner i where edge i-1 meets edge i (homogeneous cross product)."""
    c = np.array([np.cross(lines[i - 1], lines[i]) for i in range(4)])
    with np.errstate(divide="ignore", invalid="ignore"):
        return c[:, :2] / c[:, 2:3]


def _contour_corners(contour: np.ndarray, lens: Lens) -> np.ndarray:
    """Corners (ideal px) from lines through the contour's pixels along the middle of each hull side."""
    pts = lens.undistort(contour.reshape(-1, 2).astype(np.float64))
    lines = []
    for side in _hull_sides(contour):
        a, b = lens.undistort(side)
        ab = b - a
        t = ((pts - a) @ ab) / (ab @ ab)
        d = np.abs((pts - a) @ np.array([-ab[1], ab[0]])) / np.linalg.norm(ab)
        edge = pts[(t > 0.1) & (t < 0.9) & (d < 6)]           # the side's middle, away from the corners
        if len(edge) < 10:
            raise CalibrationError("could not trace the sheet's edges; is the sheet evenly lit?")
        lines.append(_line(edge))
    return _intersect(lines)


# ----------------------------------------------------------------------------------------------
# 3. sub-pixel edges


def _edge_points(flat: np.ndarray, a: np.ndarray, b: np.ndarray, outward: np.ndarray, lens: Lens) -> np.ndarray:
    """Sub-pixel points (ideal px) of the sheet's edge between corners a and b (ideal px).

    Each profile runs across the edge, from EDGE_HALF_PX inside to EDGE_HALF_PX outside, sampled in
    the raw frame through the lens. With I and O the paper and table levels at its two ends, the
    edge lies where the normalised profile (v - O) / (I - O) has as much area before it as it has
    missing after it: the 50 % point of a blurred step, with the noise of every sample averaged."""
    length = float(np.linalg.norm(b - a))
    along = (b - a) / length
    t = np.arange(0.08 * length, 0.92 * length, EDGE_STEP_PX)
    s = np.arange(-EDGE_HALF_PX, EDGE_HALF_PX + 1e-9, 0.25)
    ideal = a + t[:, None, None] * along + s[None, :, None] * outward          # [T, S, 2]
    raw = lens.distort(ideal.reshape(-1, 2)).reshape(ideal.shape).astype(np.float32)
    v = cv2.remap(flat, raw[..., 0], raw[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    end = int(round(3.0 / 0.25))                                           # 3 px at each end: the levels
    inside, outside = v[:, :end].mean(1), v[:, -end:].mean(1)
    frac = (v - outside[:, None]) / np.maximum(inside - outside, 1e-6)[:, None]
    e = -EDGE_HALF_PX + np.trapezoid(frac, s, axis=1)
    # keep clean paper-to-table steps whose edge lies well inside the profile
    good = (inside > MIN_SHEET_RATIO * outside) & (np.abs(e) < EDGE_HALF_PX - 3.5)
    return a + t[good, None] * along + e[good, None] * outward


def _refine_corners(flat: np.ndarray, corners: np.ndarray, lens: Lens) -> np.ndarray:
    """Corners (ideal px) from trimmed line fits to the sub-pixel points of the four edges."""
    centre = corners.mean(0)
    lines = []
    for i in range(4):
        a, b = corners[i], corners[(i + 1) % 4]
        d = (b - a) / np.linalg.norm(b - a)
        normal = np.array([-d[1], d[0]])
        if normal @ (a - centre) < 0:
            normal = -normal
        lines.append(_trimmed_line(_edge_points(flat, a, b, normal, lens)))
    return _intersect(lines)


# ----------------------------------------------------------------------------------------------


def detect_paper(frame: np.ndarray, lens: Lens | None = None, view=None) -> np.ndarray:
    """Corners [4, 2] of the sheet in raw camera px, ordered TL, TR, BR, BL as seen through `view`
    (a raw camera px -> projector px map; None = as seen by the camera). Raises CalibrationError."""
    assert frame.ndim == 2 and frame.dtype == np.uint8, f"expected a gray uint8 frame, got {frame.dtype} {frame.shape}"
    _check_contrast(frame)
    flat = flatten_illumination(frame)
    contour = _sheet_contour(_sheet_mask(flat))
    lens = lens or Lens.for_image(frame.shape[1], frame.shape[0])
    corners = _contour_corners(contour, lens)
    for _ in range(EDGE_REFINE_PASSES):
        if not np.isfinite(corners).all() or polygon_area(corners) < MIN_PAPER_FRACTION * frame.size:
            break
        corners = _refine_corners(flat, corners, lens)
    if not np.isfinite(corners).all() or polygon_area(corners) < MIN_PAPER_FRACTION * frame.size:
        raise CalibrationError("the sheet's corners could not be located; check the lighting")
    return order_corners(lens.distort(corners), view)
