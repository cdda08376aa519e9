"""The calibration file: written by `python -m calibration`, read by the table runtime.

Plain YAML lists (yaml.safe_load reads it; no OpenCV FileStorage tags), a version field, atomic
writes with a dated backup of the previous file, and validation on load that names the bad key.

Coordinate frames:
- camera: pixels of the IR camera frame (what installation/sources delivers);
- projector: pixels of the projector framebuffer (the pygame window);
- paper: the encoder's square image, [0, S] x [0, S], mapped onto the paper's four corners.
"""
from __future__ import annotations

import datetime as _dt
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from common.atomic import atomic_write_text, dated_backup
from common.config import ConfigError, from_dict, to_dict

CALIBRATION_VERSION = 1


@dataclass
class Calibration:
    version: int
    camera_size: tuple[int, int]                       # (width, height)
    projector_size: tuple[int, int]                    # (width, height)
    cam_to_proj: list[list[float]]                     # 3x3 homography, camera px -> projector px
    paper_corners_cam: list[list[float]]               # 4x2: TL, TR, BR, BL corners of the paper, camera px
    method: str = "identity"
    created: str = ""
    rms_px: float | None = None
    max_px: float | None = None
    n_points: int = 0
    residuals_px: list[float] = field(default_factory=list)

    def __post_init__(self):
        if self.version != CALIBRATION_VERSION:
            raise ValueError(f"calibration version {self.version} is not supported "
                             f"(this software reads version {CALIBRATION_VERSION}); recalibrate")
        h = np.asarray(self.cam_to_proj, dtype=np.float64)
        if h.shape != (3, 3) or not np.isfinite(h).all() or abs(np.linalg.det(h)) < 1e-12:
            raise ValueError("cam_to_proj must be a finite, invertible 3x3 matrix")
        c = np.asarray(self.paper_corners_cam, dtype=np.float64)
        if c.shape != (4, 2) or not np.isfinite(c).all():
            raise ValueError("paper_corners_cam must be 4 points [x, y] (TL, TR, BR, BL)")

    @property
    def H(self) -> np.ndarray:
        return np.asarray(self.cam_to_proj, dtype=np.float64)

    def paper_to_cam(self, side: int) -> np.ndarray:
        """Homography from the square paper image [0, side]^2 to camera pixels."""
        import cv2

        src = np.float32([[0, 0], [side, 0], [side, side], [0, side]])
        return cv2.getPerspectiveTransform(src, np.float32(self.paper_corners_cam)).astype(np.float64)

    def cam_to_paper(self, side: int) -> np.ndarray:
        return np.linalg.inv(self.paper_to_cam(side))

    def paper_to_projector(self, side: int) -> np.ndarray:
        """Where the generated square image must be drawn in the projector framebuffer."""
        return self.H @ self.paper_to_cam(side)


def identity_calibration(camera_size: tuple[int, int], projector_size: tuple[int, int],
                         paper_corners_cam=None) -> Calibration:
    """Uncalibrated default: camera frame scaled onto the projector, paper = whole camera frame."""
    cw, ch = camera_size
    pw, ph = projector_size
    h = np.diag([pw / cw, ph / ch, 1.0])
    corners = paper_corners_cam if paper_corners_cam is not None else [[0, 0], [cw, 0], [cw, ch], [0, ch]]
    return Calibration(version=CALIBRATION_VERSION, camera_size=(cw, ch), projector_size=(pw, ph),
                       cam_to_proj=h.tolist(), paper_corners_cam=np.asarray(corners, float).tolist(),
                       method="identity", created=_now())


def _now() -> str:
    return _dt.datetime.now().isoformat(timespec="seconds")


def load_calibration(path: str | Path) -> Calibration:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(str(path), "", "calibration file not found; run `python -m calibration`")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as e:
        raise ConfigError(str(path), "", f"not valid YAML: {e}") from e
    return from_dict(Calibration, data, str(path))


def save_calibration(path: str | Path, cal: Calibration) -> Path | None:
    """Atomically write `cal`; the previous file (if any) is kept as a dated backup, which is returned."""
    from_dict(Calibration, to_dict(cal), str(path))          # refuse to write what we could not read back
    backup = dated_backup(path)
    atomic_write_text(path, yaml.safe_dump(to_dict(cal), sort_keys=False))
    return backup
