"""Helpers for the table-runtime tests: a rendered table watched by Vision, and test configs."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import yaml

from calibration.store import identity_calibration
from common.paths import REPO_ROOT
from installation.frames import Frame
from installation.synthetic import SyntheticParams, TableRenderer
from installation.vision import Vision, VisionParams


class Bench:
    """A rendered table (TableRenderer) and a Vision looking at it through the ideal calibration."""

    def __init__(self, params: SyntheticParams | None = None, vision: VisionParams | None = None,
                 sketch_size: int = 64):
        self.p = params or SyntheticParams(width=640, height=480)
        self.r = TableRenderer(self.p)
        self.cal = identity_calibration((self.p.width, self.p.height), (1280, 720), self.r.corners().tolist())
        vp = vision or VisionParams()
        self.v = Vision(self.cal.cam_to_paper_maps(vp.work_size), (self.p.width, self.p.height), sketch_size, vp)
        self.t, self.seq = 0.0, 0
        self.blank = np.zeros((self.p.canvas, self.p.canvas), np.uint8)

    def frame(self, coverage=None, pose=(0.0, 0.0, 0.0), hand=None) -> Frame:
        self.seq += 1
        self.t += 1 / 30
        img = self.r.render(self.blank if coverage is None else coverage, pose, hand)
        return Frame(img, self.t, self.seq)

    def feed(self, coverage=None, n: int = 1, pose=(0.0, 0.0, 0.0), hand=None):
        res = None
        for _ in range(n):
            res = self.v.process(self.frame(coverage, pose, hand))
        return res

    def start(self):
        """Blank-paper reference, as at boot."""
        self.v.capture_reference()
        return self.feed(None, self.v.p.reference_frames)


def write_config(path: Path, model: Path, **sections) -> Path:
    """A table YAML for tests: synthetic table, small window, no log files, fast timings."""
    cfg = {
        "hardware": str(REPO_ROOT / "hardware/profiles/default.yaml"),
        "calibration": None,
        "model": {"path": str(model), "device": "cpu", "threads": 1},
        "source": {"kind": "synthetic", "synthetic": {"width": 320, "height": 240, "canvas": 256, "seed": 1,
                                                       "idle_s": 0.3, "hold_s": 2.0}},
        "vision": {"work_size": 128, "reference_frames": 4},
        "display": {"size": [480, 270], "fps": 30},
        "logging": {"dir": None, "status_every_s": 1.0},
    }
    for k, v in sections.items():
        if isinstance(v, dict) and isinstance(cfg.get(k), dict):
            cfg[k] = {**cfg[k], **v}
        else:
            cfg[k] = v
    path.write_text(yaml.safe_dump(cfg))
    return path
