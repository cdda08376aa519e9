"""Hardware profiles: which camera, which display, which table. One YAML per installation.

The camera block is what the runtime asks the V4L2 driver for; the driver may apply something else,
so the runtime applies `CameraProfile.v4l2_controls()` in order, reads every value back and logs the
difference (hardware/camera.py). Every value is validated on load: a technician editing the YAML
gets the file, the dotted key and what was expected.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from common.config import load_config

_CONTROL_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# set through their own profile fields; a duplicate in `controls` would make the order decide
# (old kernels' spellings included: exposure_auto, exposure_absolute)
_OWN_FIELDS = {"auto_exposure": "auto_exposure", "exposure_auto": "auto_exposure", "exposure_time_absolute": "exposure",
               "exposure_absolute": "exposure", "gain": "gain"}
V4L2_EXPOSURE_MANUAL, V4L2_EXPOSURE_APERTURE_PRIORITY = 1, 3


@dataclass
class CameraProfile:
    device: str = "0"                      # /dev/v4l/by-id/... path (stable across reboots) or an index
    width: int = 1280
    height: int = 720
    fps: int = 30
    fourcc: Literal["MJPG", "YUYV", "GREY", "Y16"] = "MJPG"
    auto_exposure: bool = False            # IR LEDs are constant: a fixed exposure keeps the threshold stable
    exposure: float | None = 156.0         # V4L2 exposure_time_absolute, units of 100 us; None = leave as is
    gain: float | None = 0.0
    buffer_size: int = 1                   # one buffer: always the newest frame, never a backlog
    controls: dict[str, int] = field(default_factory=dict)   # extra V4L2 controls by name (v4l2-ctl spelling)

    def __post_init__(self):
        if not (self.device.isdigit() or self.device.startswith("/dev/")):
            raise ValueError(f"camera device must be a /dev/v4l/by-id/... path or an index like \"0\", "
                             f"got {self.device!r}")
        if self.width <= 0 or self.height <= 0 or self.fps <= 0:
            raise ValueError(f"camera width/height/fps must be positive, got {self.width}x{self.height}@{self.fps}")
        if self.exposure is not None and self.exposure <= 0:
            raise ValueError(f"camera exposure must be positive (units of 100 us) or null, got {self.exposure}")
        if self.exposure is not None and self.auto_exposure:
            raise ValueError("camera exposure is set but auto_exposure is true: the driver would ignore it; "
                             "set auto_exposure: false (recommended under constant IR light) or exposure: null")
        if self.gain is not None and self.gain < 0:
            raise ValueError(f"camera gain must be >= 0 or null, got {self.gain}")
        if not 1 <= self.buffer_size <= 8:
            raise ValueError(f"camera buffer_size must be 1..8, got {self.buffer_size}")
        for name in self.controls:
            if not _CONTROL_NAME.match(name):
                raise ValueError(f"camera control {name!r} is not a V4L2 control name "
                                 "(lower case, underscores, as `v4l2-ctl --list-ctrls` prints them)")
            if name in _OWN_FIELDS:
                raise ValueError(f"camera control {name!r} has its own key: set camera.{_OWN_FIELDS[name]} instead")

    @property
    def is_by_id(self) -> bool:
        """Index and /dev/videoN numbering change with USB enumeration; by-id paths do not."""
        return self.device.startswith("/dev/v4l/by-id/") or self.device.startswith("/dev/v4l/by-path/")

    def v4l2_controls(self) -> dict[str, int]:
        """Controls to apply, in order (auto exposure before exposure, or the driver rejects it),
        with the values a read-back should return."""
        out = {"auto_exposure": V4L2_EXPOSURE_APERTURE_PRIORITY if self.auto_exposure else V4L2_EXPOSURE_MANUAL}
        if self.exposure is not None:
            out["exposure_time_absolute"] = int(round(self.exposure))
        if self.gain is not None:
            out["gain"] = int(round(self.gain))
        out.update(self.controls)
        return out


@dataclass
class DisplayProfile:
    index: int = 0                         # SDL display index of the projector
    name: str | None = None                # optional: match the display by name instead of index
    width: int = 1920
    height: int = 1080
    fullscreen: bool = True

    def __post_init__(self):
        if self.index < 0:
            raise ValueError(f"display index must be >= 0, got {self.index}")
        if self.name is not None and not self.name.strip():
            raise ValueError("display name must be a non-empty string or null")
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"display size must be positive, got {self.width}x{self.height}")


def _check_rect(name: str, rect, bounds: tuple[int, int], bounds_name: str) -> None:
    x, y, w, h = rect
    if w <= 0 or h <= 0 or x < 0 or y < 0:
        raise ValueError(f"{name} must be [x, y, w, h] with x, y >= 0 and w, h > 0, got {list(rect)}")
    if x + w > bounds[0] or y + h > bounds[1]:
        raise ValueError(f"{name} {list(rect)} reaches beyond the {bounds_name} ({bounds[0]}x{bounds[1]})")


@dataclass
class TableProfile:
    paper_mm: tuple[float, float] = (420.0, 297.0)           # A3 landscape tracing paper
    roi: tuple[int, int, int, int] | None = None             # camera region of interest x, y, w, h
    projector_roi: tuple[int, int, int, int] | None = None   # projector px that land on the paper, x, y, w, h:
                                                              # the calibration grid goes inside; None = all

    def __post_init__(self):
        if min(self.paper_mm) <= 0:
            raise ValueError(f"paper_mm must be positive, got {list(self.paper_mm)}")


@dataclass
class HardwareProfile:
    camera: CameraProfile = field(default_factory=CameraProfile)
    display: DisplayProfile = field(default_factory=DisplayProfile)
    table: TableProfile = field(default_factory=TableProfile)

    def __post_init__(self):
        if self.table.roi is not None:
            _check_rect("table.roi", self.table.roi, (self.camera.width, self.camera.height), "camera frame")
        if self.table.projector_roi is not None:
            _check_rect("table.projector_roi", self.table.projector_roi,
                        (self.display.width, self.display.height), "display")

    def projector_roi(self) -> tuple[int, int, int, int]:
        return self.table.projector_roi or (0, 0, self.display.width, self.display.height)


def load_profile(path: str | Path) -> HardwareProfile:
    return load_config(path, HardwareProfile)
