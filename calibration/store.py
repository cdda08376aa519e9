"""The calibration file: written by `python -m calibration`, read by the table runtime.

Plain YAML lists (yaml.safe_load reads it; no OpenCV FileStorage tags), a version field, atomic
writes with a dated backup of the previous file, and validation on load that names the bad key.

Coordinate frames:
- camera: raw pixels of the IR camera frame (what installation/sources delivers);
- ideal camera: camera pixels with the lens distortion removed (`lens`, identity when k = 0);
- projector: pixels of the projector framebuffer (the pygame window);
- paper: the encoder's square image, [0, S] x [0, S], mapped onto the paper's four corners.

`cam_to_proj` maps ideal camera pixels to projector pixels. The projector side is a pure
homography (a flat table seen by a pinhole projector), so `paper_to_projector` is exact; only the
camera side carries the lens, which `cam_to_paper_maps` folds into a cv2.remap grid.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from calibration.geometry import Lens, apply_homography, square_corners
from common.atomic import atomic_write_text, dated_backup
from common.config import ConfigError, from_dict, to_dict

CALIBRATION_VERSION = 1


@dataclass
class Calibration:
    version: int
    camera_size: tuple[int, int]                       # (width, height)
    projector_size: tuple[int, int]                    # (width, height)
    cam_to_proj: list[list[float]]                     # 3x3 homography, ideal camera px -> projector px
    paper_corners_cam: list[list[float]]               # 4x2: TL, TR, BR, BL corners of the paper, raw camera px
    method: str = "identity"
    created: str = ""
    rms_px: float | None = None                        # fit residuals at the calibration points, projector px
    max_px: float | None = None
    loo_rms_px: float | None = None                    # leave-one-out: the error expected between the points
    n_points: int = 0
    residuals_px: list[float] = field(default_factory=list)
    points_cam: list[list[float]] = field(default_factory=list)    # the correspondences the fit used
    points_proj: list[list[float]] = field(default_factory=list)
    lens: Lens | None = None                           # camera distortion; None = a distortion-free lens
    paper_mm: tuple[float, float] | None = None        # paper size, for errors in millimetres

    def __post_init__(self):
        if self.version != CALIBRATION_VERSION:
            raise ValueError(f"calibration version {self.version} is not supported "
                             f"(this software reads version {CALIBRATION_VERSION}); recalibrate")
        if min(self.camera_size) <= 0 or min(self.projector_size) <= 0:
            raise ValueError(f"camera_size {self.camera_size} and projector_size {self.projector_size} "
                             "must be positive (width, height)")
        h = np.asarray(self.cam_to_proj, dtype=np.float64)
        if h.shape != (3, 3) or not np.isfinite(h).all() or abs(np.linalg.det(h)) < 1e-12:
            raise ValueError("cam_to_proj must be a finite, invertible 3x3 matrix")
        c = np.asarray(self.paper_corners_cam, dtype=np.float64)
        if c.shape != (4, 2) or not np.isfinite(c).all():
            raise ValueError("paper_corners_cam must be 4 points [x, y] (TL, TR, BR, BL)")
        if len(self.points_cam) != len(self.points_proj):
            raise ValueError(f"points_cam has {len(self.points_cam)} points but points_proj "
                             f"{len(self.points_proj)}: they must pair up")

    @property
    def H(self) -> np.ndarray:
        return np.asarray(self.cam_to_proj, dtype=np.float64)

    @property
    def lens_model(self) -> Lens:
        return self.lens if self.lens is not None else Lens.for_image(*self.camera_size)

    def cam_to_projector(self, pts) -> np.ndarray:
        """Raw camera pixels [N, 2] -> projector pixels, lens included."""
        return apply_homography(self.H, self.lens_model.undistort(pts))

    def projector_to_cam(self, pts) -> np.ndarray:
        return self.lens_model.distort(apply_homography(np.linalg.inv(self.H), pts))

    def _paper_to(self, corners, side: int) -> np.ndarray:
        import cv2

        return cv2.getPerspectiveTransform(np.float32(square_corners(side)),
                                           np.float32(corners)).astype(np.float64)

    def paper_to_cam(self, side: int) -> np.ndarray:
        """Homography from the square paper image [0, side]^2 to raw camera pixels.

        Exact for a distortion-free lens; with `lens` set, `cam_to_paper_maps` is the exact crop.
        """
        return self._paper_to(self.paper_corners_cam, side)

    def cam_to_paper(self, side: int) -> np.ndarray:
        return np.linalg.inv(self.paper_to_cam(side))

    def paper_to_projector(self, side: int) -> np.ndarray:
        """Where the generated square image must be drawn in the projector framebuffer."""
        ideal = self.lens_model.undistort(self.paper_corners_cam)
        return self.H @ self._paper_to(ideal, side)

    def cam_to_paper_maps(self, side: int) -> tuple[np.ndarray, np.ndarray]:
        """cv2.remap grids (float32 [side, side]) that crop the paper out of a raw camera frame.

        Pixel (u, v) of the crop samples the camera where paper point (u, v) lies, lens included,
        so ink at paper (u, v) comes back at `paper_to_projector(side)` applied to (u, v).
        """
        v, u = np.mgrid[0:side, 0:side].astype(np.float64)
        ideal = self.lens_model.undistort(self.paper_corners_cam)
        raw = self.lens_model.distort(apply_homography(self._paper_to(ideal, side), np.c_[u.ravel(), v.ravel()]))
        return (raw[:, 0].reshape(side, side).astype(np.float32),
                raw[:, 1].reshape(side, side).astype(np.float32))

    def projector_px_per_mm(self) -> float | None:
        """Mean projector pixels per millimetre along the paper edges (None without paper_mm)."""
        if self.paper_mm is None:
            return None
        p = self.cam_to_projector(self.paper_corners_cam)
        edges = np.linalg.norm(p - np.roll(p, -1, axis=0), axis=1)
        w, h = self.paper_mm
        return float(edges.sum() / (2 * (w + h)))


def identity_calibration(camera_size: tuple[int, int], projector_size: tuple[int, int],
                         paper_corners_cam=None) -> Calibration:
    """Uncalibrated default: camera frame scaled onto the projector, paper = whole camera frame."""
    cw, ch = camera_size
    pw, ph = projector_size
    h = np.diag([pw / cw, ph / ch, 1.0])
    corners = paper_corners_cam if paper_corners_cam is not None else [[0, 0], [cw, 0], [cw, ch], [0, ch]]
    return Calibration(version=CALIBRATION_VERSION, camera_size=(cw, ch), projector_size=(pw, ph),
                       cam_to_proj=h.tolist(), paper_corners_cam=np.asarray(corners, float).tolist(),
                       method="identity", created=now_iso())


def now_iso() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


def load_calibration(path: str | Path) -> Calibration:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), "", "calibration file not found; run `python -m calibration`")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(str(path), "", f"not valid YAML: {e}") from e
    if isinstance(data, dict) and data.get("version") != CALIBRATION_VERSION:
        raise ConfigError(str(path), "version", f"calibration version {data.get('version')!r} is not supported "
                          f"(this software reads version {CALIBRATION_VERSION}); recalibrate with "
                          "`python -m calibration`")
    return from_dict(Calibration, data, str(path))


def save_calibration(path: str | Path, cal: Calibration) -> Path | None:
    """Atomically write `cal`; the previous file (if any) is kept as a dated backup, which is returned."""
    text = yaml.safe_dump(to_dict(cal), sort_keys=False)
    from_dict(Calibration, yaml.safe_load(text), str(path))     # refuse to write what we could not read back
    backup = dated_backup(path)
    atomic_write_text(path, text)
    return backup
