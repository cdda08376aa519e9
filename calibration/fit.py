"""Camera -> projector fit: RANSAC homography, then a joint homography + lens refinement.

1. Refuse degenerate input with a message the technician can act on (too few points, points on
   one line, points bunched in a corner).
2. cv2.findHomography with RANSAC on the raw points, with a threshold wide enough to tolerate the
   lens (a homography cannot bend lines), catches gross mistakes: a dot matched to the wrong
   crosshair, a stray mark.
3. A least-squares fit of the homography together with the division-model lens (one parameter,
   from 8 points on), robust loss first, then plain least squares on the points that fit within
   `ransac_px`. Points beyond it are outliers: reported by number, never silently used.
4. Leave-one-out residuals: the error expected *between* the points, which the fit residuals
   (the error *at* the points) understate.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.optimize import least_squares
from scipy.spatial import cKDTree

from calibration.errors import CalibrationError
from calibration.geometry import Lens, apply_homography, as_points, flatness, polygon_area

MIN_POINTS = 4
MIN_POINTS_LENS = 8
MIN_FLATNESS = 0.05            # smallest / largest singular value of the point cloud


@dataclass
class Fit:
    H: np.ndarray                # ideal camera px -> target px
    lens: Lens
    inliers: np.ndarray          # bool [N]
    residuals: np.ndarray        # [N] target px, every point under the final model
    loo: np.ndarray              # [N] leave-one-out error (nan for outliers)

    @property
    def rms(self) -> float:
        r = self.residuals[self.inliers]
        return float(np.sqrt(np.mean(r ** 2)))

    @property
    def max(self) -> float:
        return float(self.residuals[self.inliers].max())

    @property
    def loo_rms(self) -> float:
        r = self.loo[self.inliers]
        return float(np.sqrt(np.mean(r ** 2)))

    def map(self, cam_pts) -> np.ndarray:
        return apply_homography(self.H, self.lens.undistort(cam_pts))


def _names(idx, labels) -> str:
    return ", ".join(str(labels[i]) for i in idx)


def check_geometry(cam: np.ndarray, target: np.ndarray, labels: list) -> None:
    """Raise CalibrationError for point sets no homography can be trusted on."""
    n = len(cam)
    if n < MIN_POINTS:
        raise CalibrationError(f"only {n} point(s) were measured; at least {MIN_POINTS} are needed and a "
                               "3x3 grid (9) is the minimum for a trustworthy fit. Redo the grid.")
    for name, pts in (("camera", cam), ("projector", target)):
        f = flatness(pts)
        if f < MIN_FLATNESS:
            raise CalibrationError(
                f"the points lie (almost) on one line in the {name} image (spread ratio {f:.3f} < "
                f"{MIN_FLATNESS}); no homography can be fitted. Use a 2-D grid of crosshairs that covers "
                "the sheet, and check that the dots were marked on the crosshairs, not along one edge.")
    dup = [(i, j) for i, j in sorted(cKDTree(cam).query_pairs(1.0))
           if np.linalg.norm(target[i] - target[j]) > 5.0]
    if dup:
        i, j = dup[0]
        raise CalibrationError(f"points {labels[i]} and {labels[j]} were seen at the same camera position "
                               "for different crosshairs: one dot was counted twice. Redo both.", redo=[i, j])


class _Normaliser:
    """Hartley normalisation: mean at 0, mean distance sqrt(2); keeps the solver well conditioned."""

    def __init__(self, pts: np.ndarray):
        self.mean = pts.mean(0)
        self.scale = np.sqrt(2) / max(np.linalg.norm(pts - self.mean, axis=1).mean(), 1e-9)
        self.T = np.array([[self.scale, 0, -self.scale * self.mean[0]],
                           [0, self.scale, -self.scale * self.mean[1]], [0, 0, 1.0]])


def _solve(cam, target, lens0: Lens, h0: np.ndarray, fit_lens: bool, loss: str, f_scale: float):
    nc, nt = _Normaliser(cam), _Normaliser(target)
    hn0 = nt.T @ h0 @ np.linalg.inv(nc.T)
    hn0 = hn0 / hn0[2, 2]
    x0 = np.r_[hn0.ravel()[:8], [lens0.k] if fit_lens else []]

    def unpack(x):
        hn = np.append(x[:8], 1.0).reshape(3, 3)
        lens = Lens(lens0.center, lens0.scale, float(x[8]) if fit_lens else lens0.k)
        return np.linalg.inv(nt.T) @ hn @ nc.T, lens

    def residual(x):
        h, lens = unpack(x)
        return (apply_homography(h, lens.undistort(cam)) - target).ravel()

    bounds = (np.r_[[-np.inf] * 8, [-0.5] if fit_lens else []], np.r_[[np.inf] * 8, [0.5] if fit_lens else []])
    sol = least_squares(residual, x0, loss=loss, f_scale=f_scale, bounds=bounds, x_scale="jac")
    h, lens = unpack(sol.x)
    return h / h[2, 2], lens


def fit_camera_to_target(cam_pts, target_pts, camera_size: tuple[int, int], *, ransac_px: float = 6.0,
                         fit_lens: bool | None = None, labels: list | None = None,
                         leave_one_out: bool = True, lens: Lens | None = None) -> Fit:
    """Fit raw camera px -> target px (projector px, or sheet mm for the fiducial flow).

    `ransac_px` is the largest residual, in target units, a good point may have. `fit_lens`
    None = estimate the lens when there are enough points; a given `lens` is kept fixed.
    """
    cam, target = as_points(cam_pts), as_points(target_pts)
    assert len(cam) == len(target), f"{len(cam)} camera points but {len(target)} target points"
    labels = labels if labels is not None else [str(i + 1) for i in range(len(cam))]
    check_geometry(cam, target, labels)
    lens0 = lens if lens is not None else Lens.for_image(*camera_size)
    if fit_lens is None:
        fit_lens = lens is None and len(cam) >= MIN_POINTS_LENS
    n = len(cam)
    spread = float(np.linalg.norm(target.max(0) - target.min(0)))
    gross = max(3 * ransac_px, 0.03 * spread)         # what the lens alone can never explain
    h0, mask = cv2.findHomography(lens0.undistort(cam), target, cv2.RANSAC, gross, maxIters=5000, confidence=0.999)
    if h0 is None:
        raise CalibrationError("no consistent homography between the camera and the targets: the dots do not "
                               "match the crosshairs (was the grid marked in a different order?). Redo the grid.")
    keep = mask.ravel().astype(bool)
    if keep.sum() < MIN_POINTS:
        raise CalibrationError("fewer than 4 points agree with each other; redo the grid.")
    h, lns = _solve(cam[keep], target[keep], lens0, h0, fit_lens and keep.sum() >= MIN_POINTS_LENS,
                    "soft_l1", ransac_px / 3)
    for _ in range(3):                                # outliers out, plain least squares on the rest
        res = np.linalg.norm(apply_homography(h, lns.undistort(cam)) - target, axis=1)
        keep_new = res <= ransac_px
        if keep_new.sum() < MIN_POINTS:
            break
        use_lens = fit_lens and keep_new.sum() >= MIN_POINTS_LENS
        h, lns = _solve(cam[keep_new], target[keep_new], lns if use_lens else lens0, h, use_lens, "linear", 1.0)
        if (keep_new == keep).all():
            break
        keep = keep_new
    res = np.linalg.norm(apply_homography(h, lns.undistort(cam)) - target, axis=1)
    inliers = res <= ransac_px
    bad = np.flatnonzero(~inliers)
    if inliers.sum() < MIN_POINTS or len(bad) > max(1, n // 5):
        raise CalibrationError(
            f"{len(bad)} of {n} points do not fit the others (more than {ransac_px:.0f} px off): "
            f"{_names(bad, labels)}. Check that each dot sits on its crosshair, cover wrong dots with white "
            "tape, and redo those points.", redo=list(bad))
    loo = np.full(n, np.nan)
    if leave_one_out and inliers.sum() > MIN_POINTS:
        idx = np.flatnonzero(inliers)
        for j in idx:
            rest = idx[idx != j]
            use_lens = fit_lens and len(rest) >= MIN_POINTS_LENS
            hj, lj = _solve(cam[rest], target[rest], lns if use_lens else lens0, h, use_lens, "linear", 1.0)
            loo[j] = np.linalg.norm(apply_homography(hj, lj.undistort(cam[j:j + 1]))[0] - target[j])
    return Fit(H=h, lens=lns, inliers=inliers, residuals=res, loo=loo)


def coverage(points_cam, paper_corners_cam) -> float:
    """Share of the paper (camera image) inside the convex hull of the calibration points."""
    paper = polygon_area(paper_corners_cam)
    if paper <= 0 or len(points_cam) < 3:
        return 0.0
    hull = cv2.convexHull(np.float32(as_points(points_cam)))
    sheet = cv2.convexHull(np.float32(as_points(paper_corners_cam)))
    inside, _ = cv2.intersectConvexConvex(hull, sheet)
    return float(inside) / paper
