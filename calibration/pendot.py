"""The pen-dot calibration: crosshairs on the projector, carbon dots on the paper, IR camera finds them.

`PenDotSession` holds the bookkeeping and every check a single dot must pass; `run_pen_dot` is the
loop the live table and the simulated table share. After the grid, the fit and the quality checks
decide; nothing is saved by this module (the caller saves only a result whose checks pass).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np
from loguru import logger

from calibration.dots import Changes, DotParams, DotWatcher
from calibration.errors import CalibrationError
from calibration.fit import MIN_FLATNESS, Fit, coverage, fit_camera_to_target
from calibration.geometry import apply_homography, flatness
from calibration.paper import detect_paper
from calibration.scene import Camera, Projector, Scene
from calibration.store import CALIBRATION_VERSION, Calibration, now_iso

MIN_GRID, MAX_GRID = 3, 5


def grid_targets(n: int, roi: tuple[float, float, float, float], margin: float = 0.08) -> np.ndarray:
    """n x n crosshair positions (projector px) inside `roi` = (x, y, w, h), `margin` of it free.

    The four grid corners come first, then the rest row by row: from the fifth dot on, every new
    dot can be checked against the position the earlier ones predict.
    """
    if not MIN_GRID <= n <= MAX_GRID:
        raise CalibrationError(f"grid {n}x{n} is not supported: use {MIN_GRID} to {MAX_GRID}")
    x, y, w, h = roi
    xs = np.linspace(x + margin * w, x + (1 - margin) * w, n)
    ys = np.linspace(y + margin * h, y + (1 - margin) * h, n)
    grid = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
    corners = [0, n - 1, n * n - 1, n * (n - 1)]
    return grid[corners + [i for i in range(n * n) if i not in corners]]


@dataclass
class Check:
    name: str
    ok: bool
    detail: str


@dataclass
class Quality:
    checks: list[Check] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    def failures(self) -> list[str]:
        return [f"{c.name}: {c.detail}" for c in self.checks if not c.ok]


@dataclass
class CalibrationResult:
    calibration: Calibration
    fit: Fit
    targets: np.ndarray               # [N, 2] projector px
    cam_points: np.ndarray            # [N, 2] raw camera px
    coverage: float
    quality: Quality
    frame: np.ndarray                 # last camera frame (for the report picture)


class PenDotSession:
    """Which dot belongs to which crosshair, and whether a newly seen mark can be accepted."""

    def __init__(self, targets: np.ndarray, gross_px: float = 60.0):
        self.targets = np.asarray(targets, dtype=np.float64)
        self.found: dict[int, np.ndarray] = {}
        self.gross_px = gross_px

    def label(self, i: int) -> str:
        return f"dot {i + 1}"

    def where(self, i: int) -> str:
        x, y = self.targets[i]
        return f"{self.label(i)} (crosshair at projector {x:.0f}, {y:.0f})"

    def accept(self, i: int, changes: Changes, moved_fraction: float) -> np.ndarray:
        """The camera position of dot i from what changed; CalibrationError says what to redo."""
        if changes.changed_fraction > moved_fraction:
            raise CalibrationError(
                f"{changes.changed_fraction:.0%} of the image changed while waiting for {self.label(i)}: the sheet "
                "or the camera moved. Every dot so far is void: fix the sheet and restart the calibration.",
                redo=list(range(len(self.targets))))
        if changes.large:
            b = changes.large[0]
            raise CalibrationError(
                f"a large dark area appeared at camera ({b.x:.0f}, {b.y:.0f}) while waiting for {self.label(i)}: "
                "a hand, a shadow or a smudge. Move away from the table; if it is a smudge, cover it with "
                "white tape. The tool checks again when the image is still.", redo=[i])
        if not changes.dots:
            raise CalibrationError(f"no new mark seen for {self.where(i)}. Mark the crosshair's centre with "
                                   "a carbon pen (`python -m calibration pen-test` shows which pens the camera "
                                   "sees) and keep the dot on the paper.", redo=[i])
        if len(changes.dots) > 1:
            spots = ", ".join(f"({b.x:.0f}, {b.y:.0f})" for b in changes.dots)
            raise CalibrationError(
                f"{len(changes.dots)} new marks appeared for {self.where(i)} at camera {spots}; expected one. "
                "Cover the stray mark(s) with white tape: the tool checks again when the image is still "
                f"(press R to start {self.label(i)} over).", redo=[i])
        xy = np.array(changes.dots[0].xy)
        for j, other in self.found.items():
            if np.linalg.norm(other - xy) < 3.0:
                raise CalibrationError(f"the mark for {self.label(i)} is where {self.label(j)} is; mark "
                                       f"{self.label(i)} on its own crosshair.", redo=[i])
        self._check_prediction(i, xy)
        self.found[i] = xy
        return xy

    def _check_prediction(self, i: int, xy: np.ndarray) -> None:
        """From 4 dots on, a mark far from where the others predict it was put on the wrong crosshair."""
        idx = sorted(self.found)
        if len(idx) < 4 or flatness(self.targets[idx]) < MIN_FLATNESS:
            return
        # a homography needs 4 points with no 3 on a line: 4 strict hull vertices guarantee them
        if len(cv2.convexHull(np.float32(self.targets[idx]))) < 4:
            return
        h, _ = cv2.findHomography(np.array([self.found[j] for j in idx]), self.targets[idx], 0)
        if h is None:
            return
        pred = apply_homography(h, xy)[0]
        off = float(np.linalg.norm(pred - self.targets[i]))
        if off > self.gross_px:
            raise CalibrationError(
                f"the mark for {self.where(i)} lies {off:.0f} projector px from where the earlier dots say "
                "it should be: it was probably put on another crosshair. Cover it with white tape and press R, "
                f"then mark {self.label(i)} again.", redo=[i])

    def forget(self, indices) -> None:
        for i in indices:
            self.found.pop(int(i), None)

    def points(self) -> tuple[np.ndarray, np.ndarray]:
        idx = sorted(self.found)
        return np.array([self.found[i] for i in idx]), self.targets[idx]


def _crosshair_scene(targets, i: int, done: list[int], lines: list[str]) -> Scene:
    return Scene(crosshairs=[tuple(t) for t in targets], target=i,
                 rings=[(*targets[j], 6.0) for j in done], lines=lines)


def wait_for_dot(projector: Projector, camera: Camera, session: PenDotSession, watcher: DotWatcher,
                 i: int, n_total: int, patience_frames: int, params: DotParams, redo: bool = False) -> np.ndarray:
    """Show crosshair i until its dot is accepted; returns the frame it was found in."""
    head = f"Dot {len(session.found) + 1}/{n_total}: mark the centre of the crosshair with the carbon pen."
    message = "Then step back; the camera takes the dot when the image is still."
    if redo:
        head = (f"{session.label(i)} did not fit the others: cover its old mark with white tape, then mark "
                "the crosshair again.")
    projector.show(_crosshair_scene(session.targets, i, sorted(session.found), [head, message]))
    last_error: CalibrationError | None = None
    for _ in range(patience_frames):
        frame = camera.read()
        keys = projector.keys()
        if "escape" in keys:
            raise CalibrationError("calibration aborted by the technician; nothing was saved")
        if "r" in keys:
            watcher.rebase(frame)
            last_error = None
            projector.show(_crosshair_scene(session.targets, i, sorted(session.found),
                                            [head, "Started over: mark the crosshair now."]))
        changes = watcher.update(frame)
        if changes is None:
            continue
        try:
            xy = session.accept(i, changes, params.moved_fraction)
        except CalibrationError as e:
            last_error = e
            logger.warning(str(e))
            projector.show(_crosshair_scene(session.targets, i, sorted(session.found), [head, str(e)]))
            if len(e.redo) > 1:                      # the sheet moved: nothing to wait for
                raise
            continue
        watcher.rebase(frame)
        logger.info(f"{session.label(i)}: camera ({xy[0]:.2f}, {xy[1]:.2f})")
        return frame
    if last_error is not None:
        raise last_error
    raise CalibrationError(f"no new mark seen for {session.where(i)} in {patience_frames} frames (missed dot). "
                           f"Mark it (carbon pen, on the paper) and run the calibration again.", redo=[i])


def run_pen_dot(projector: Projector, camera: Camera, targets: np.ndarray, *, paper_mm: tuple[float, float],
                params: DotParams | None = None, ransac_px: float = 6.0, patience_frames: int = 900,
                max_redo_rounds: int = 2, min_coverage: float = 0.45, max_loo_mm: float = 1.0) -> CalibrationResult:
    """Project each crosshair, take each dot, fit, check. Raises CalibrationError (nothing saved)."""
    params = params or DotParams()
    session = PenDotSession(targets)
    watcher = DotWatcher(params)
    frame = camera.read()
    watcher.rebase(frame)
    queue = list(range(len(targets)))
    for round_ in range(max_redo_rounds + 1):
        for i in queue:
            frame = wait_for_dot(projector, camera, session, watcher, i, len(targets), patience_frames, params,
                                 redo=round_ > 0)
        cam, proj = session.points()
        labels = [session.label(i) for i in sorted(session.found)]
        fit = fit_camera_to_target(cam, proj, frame.shape[::-1], ransac_px=ransac_px, labels=labels)
        bad = [sorted(session.found)[k] for k in np.flatnonzero(~fit.inliers)]
        if not bad:
            break
        if round_ == max_redo_rounds:
            raise CalibrationError(f"{', '.join(session.label(i) for i in bad)} still do not fit the other dots "
                                   f"after {max_redo_rounds} redo rounds; check the pen and the sheet and restart.",
                                   redo=bad)
        logger.warning(f"{', '.join(session.label(i) for i in bad)} do not fit the others; redo them")
        session.forget(bad)
        queue = bad
    return finish(fit, cam, proj, frame, projector_size=projector.size, paper_mm=paper_mm, method="pen-dot",
                  min_coverage=min_coverage, max_loo_mm=max_loo_mm)


MAX_STORED_POINTS = 500       # the filter-off path fits thousands; the file keeps an even sample
COVERAGE_HINT = {
    "pen-dot": "spread the crosshairs over the whole sheet (table.projector_roi in the hardware profile) "
               "and redo the grid",
    "fiducial": "print the sheet at 100 % on paper of the drawing paper's size, and keep it all in view",
    "filter-off": "the stripes lit too little of the sheet: check the projector's focus and the room light",
}


def finish(fit: Fit, cam: np.ndarray, target: np.ndarray, frame: np.ndarray, *, projector_size: tuple[int, int],
           paper_mm, method: str, min_coverage: float, max_loo_mm: float) -> CalibrationResult:
    """Find the sheet, run the quality checks, and build the Calibration (not yet saved)."""
    corners = detect_paper(frame, fit.lens, view=fit.map)
    h, w = frame.shape
    loo = fit.loo_rms
    keep = np.linspace(0, len(cam) - 1, min(len(cam), MAX_STORED_POINTS)).round().astype(int)
    cal = Calibration(
        version=CALIBRATION_VERSION, camera_size=(w, h), projector_size=tuple(int(v) for v in projector_size),
        cam_to_proj=fit.H.tolist(), paper_corners_cam=corners.tolist(), method=method, created=now_iso(),
        rms_px=fit.rms, max_px=fit.max, loo_rms_px=loo if np.isfinite(loo) else None,
        n_points=int(fit.inliers.sum()), residuals_px=[float(r) for r in fit.residuals[keep]],
        points_cam=cam[keep].tolist(), points_proj=target[keep].tolist(), lens=fit.lens,
        paper_mm=(float(paper_mm[0]), float(paper_mm[1])))
    cov = coverage(cam[fit.inliers], corners)
    px_mm = cal.projector_px_per_mm()
    q = Quality()
    q.checks.append(Check("coverage", cov >= min_coverage,
                          f"the points span {cov:.0%} of the sheet (need {min_coverage:.0%})"
                          + ("" if cov >= min_coverage else f": {COVERAGE_HINT[method]}")))
    if np.isfinite(loo):
        err, what = loo, "leave-one-out error"
    else:                         # thousands of points: the fit cannot bend towards any single one
        err, what = fit.rms, f"fit RMS over {cal.n_points} points"
    err_mm = err / px_mm
    q.checks.append(Check("accuracy", err_mm <= max_loo_mm,
                          f"{what} {err:.2f} px = {err_mm:.2f} mm (limit {max_loo_mm:.2f} mm)"
                          + ("" if err_mm <= max_loo_mm else ": redo the points more carefully, or use a 5x5 grid")))
    return CalibrationResult(cal, fit, target, cam, cov, q, frame)
