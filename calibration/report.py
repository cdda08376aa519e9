"""The calibration report: a text table for the console and a residual plot PNG (OpenCV only)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from calibration.pendot import CalibrationResult
from common.atomic import atomic_write_bytes

CANVAS_W = 960
MAX_SHOWN = 100               # points listed and drawn; the filter-off path has thousands
ARROW_SCALES = (5, 10, 20, 50, 100, 200, 500)
GREEN, ORANGE, RED, GRAY, INK = (60, 160, 40), (0, 140, 255), (40, 40, 220), (150, 150, 150), (40, 40, 40)


def _shown(n: int) -> np.ndarray:
    return np.unique(np.linspace(0, n - 1, min(n, MAX_SHOWN)).round().astype(int))


def _mm(px: float, px_per_mm: float | None) -> str:
    return f" ({px / px_per_mm:.2f} mm)" if px_per_mm else ""


def format_report(r: CalibrationResult, truth: tuple[float, float] | None = None) -> str:
    cal, fit = r.calibration, r.fit
    ppm = cal.projector_px_per_mm()
    loo = f"{fit.loo_rms:.2f} px{_mm(fit.loo_rms, ppm)}" if np.isfinite(fit.loo_rms) else "n/a (too many points)"
    lines = [f"calibration: {cal.method}, {cal.n_points}/{len(r.targets)} points used, lens k = {fit.lens.k:+.4f}",
             f"  fit residual RMS {fit.rms:.2f} px{_mm(fit.rms, ppm)}, max {fit.max:.2f} px{_mm(fit.max, ppm)}",
             f"  leave-one-out RMS {loo} (the error expected between points)",
             f"  coverage {r.coverage:.0%} of the sheet",
             "  point   projector (x, y)      camera (x, y)       residual px   leave-one-out px"]
    for k in _shown(len(r.targets)):
        t, c = r.targets[k], r.cam_points[k]
        flag = "" if fit.inliers[k] else "   OUTLIER: redo"
        lines.append(f"  {k + 1:5d}   ({t[0]:7.1f}, {t[1]:6.1f})   ({c[0]:7.2f}, {c[1]:6.2f})   "
                     f"{fit.residuals[k]:8.2f}   {fit.loo[k]:12.2f}{flag}")
    if len(r.targets) > MAX_SHOWN:
        lines.append(f"  ({MAX_SHOWN} of {len(r.targets)} points shown)")
    if truth is not None:
        lines.append(f"  against the simulated ground truth over the sheet: RMS {truth[0]:.2f} px, "
                     f"max {truth[1]:.2f} px")
    for c in r.quality.checks:
        lines.append(f"  [{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}")
    return "\n".join(lines)


def _text(img, s, org, scale=0.5, color=INK, thick=1):
    cv2.putText(img, s, org, cv2.FONT_HERSHEY_SIMPLEX, scale, color, thick, cv2.LINE_AA)


def render_report(r: CalibrationResult, truth: tuple[float, float] | None = None) -> np.ndarray:
    """Projector-space residual plot, BGR uint8: each point's residual drawn as a magnified arrow."""
    cal, fit = r.calibration, r.fit
    pw, ph = cal.projector_size
    s = CANVAS_W / pw
    top, bottom = 70, 30 + 18 * len(r.quality.checks)
    img = np.full((int(ph * s) + top + bottom, CANVAS_W, 3), 255, np.uint8)
    shift = np.array([0.0, top])
    to_canvas = lambda p: np.round(np.asarray(p) * s + shift).astype(np.int32)    # noqa: E731
    cv2.rectangle(img, tuple(to_canvas((0, 0))), tuple(to_canvas((pw - 1, ph - 1))), GRAY, 1)
    paper = cal.cam_to_projector(cal.paper_corners_cam)
    cv2.polylines(img, [to_canvas(paper)], True, (180, 120, 60), 2, cv2.LINE_AA)
    hull = cv2.convexHull(np.float32(r.targets[fit.inliers]))
    overlay = img.copy()
    cv2.fillPoly(overlay, [to_canvas(hull.reshape(-1, 2))], (215, 240, 215))
    img = cv2.addWeighted(overlay, 0.6, img, 0.4, 0)
    fitted = fit.map(r.cam_points)
    err = fitted - r.targets
    biggest = float(np.abs(err).max()) if len(err) else 1.0
    scale = next((a for a in ARROW_SCALES if biggest * a * s > 25), ARROW_SCALES[-1])
    ppm = cal.projector_px_per_mm()
    for k in _shown(len(r.targets)):
        t, e = r.targets[k], err[k]
        res = fit.residuals[k]
        color = RED if not fit.inliers[k] else GREEN if (ppm is None or res / ppm <= 0.5) else ORANGE
        a, b = to_canvas(t), to_canvas(t + scale * e)
        cv2.drawMarker(img, tuple(a), INK, cv2.MARKER_CROSS, 10, 1, cv2.LINE_AA)
        cv2.arrowedLine(img, tuple(a), tuple(b), color, 2, cv2.LINE_AA, tipLength=0.25)
        if len(r.targets) <= 50:
            _text(img, str(k + 1), tuple(a + [6, -6]), 0.4)
    head = f"{cal.method}: {cal.n_points} points  RMS {fit.rms:.2f} px{_mm(fit.rms, ppm)}  max {fit.max:.2f} px"
    if np.isfinite(fit.loo_rms):
        head += f"  leave-one-out {fit.loo_rms:.2f} px{_mm(fit.loo_rms, ppm)}"
    _text(img, head, (10, 24), 0.55, INK, 1)
    sub = f"coverage {r.coverage:.0%}   lens k {fit.lens.k:+.3f}   arrow = residual x{scale}"
    if truth is not None:
        sub += f"   vs ground truth: RMS {truth[0]:.2f} px, max {truth[1]:.2f} px"
    _text(img, sub, (10, 50), 0.5, INK, 1)
    y = img.shape[0] - bottom + 22
    for c in r.quality.checks:
        _text(img, f"[{'ok' if c.ok else 'FAIL'}] {c.name}: {c.detail}"[:130], (10, y), 0.42,
              GREEN if c.ok else RED, 1)
        y += 18
    return img


def _camera_panel(r: CalibrationResult, width: int) -> np.ndarray:
    """The IR frame the sheet was found in, with the sheet outline and the numbered points."""
    h, w = r.frame.shape
    s = width / w
    img = cv2.cvtColor(cv2.resize(r.frame, (width, int(round(h * s))), interpolation=cv2.INTER_AREA),
                       cv2.COLOR_GRAY2BGR)
    corners = np.round(np.asarray(r.calibration.paper_corners_cam) * s).astype(np.int32)
    cv2.polylines(img, [corners], True, (180, 120, 60), 1, cv2.LINE_AA)
    _text(img, "TL", tuple(corners[0] + [4, 14]), 0.4, (180, 120, 60))
    if len(r.cam_points) <= 50:
        for k, c in enumerate(np.round(r.cam_points * s).astype(np.int32)):
            color = GREEN if r.fit.inliers[k] else RED
            cv2.circle(img, tuple(c), 6, color, 1, cv2.LINE_AA)
            _text(img, str(k + 1), tuple(c + [7, -5]), 0.35, color)
    return img


def render_report_with_camera(r: CalibrationResult, truth: tuple[float, float] | None = None) -> np.ndarray:
    plot = render_report(r, truth)
    cam = _camera_panel(r, CANVAS_W // 2)
    panel = np.full((cam.shape[0] + 30, CANVAS_W, 3), 255, np.uint8)
    _text(panel, "camera view (IR): the sheet", (10, 20), 0.5)
    _text(panel, "as found and the points", (10, 40), 0.5)
    _text(panel, "as detected", (10, 60), 0.5)
    panel[30:, CANVAS_W - cam.shape[1] - 10:CANVAS_W - 10] = cam
    return np.vstack([plot, panel])


def save_report_png(path: str | Path, r: CalibrationResult, truth: tuple[float, float] | None = None) -> Path:
    ok, buf = cv2.imencode(".png", render_report_with_camera(r, truth), [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert ok, "PNG encoding failed"
    return atomic_write_bytes(path, buf.tobytes())

