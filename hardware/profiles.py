"""Hardware profiles: which camera, which display, which table. One YAML per installation.

The camera block is what the runtime asks the V4L2 driver for; the driver may apply something else,
so the runtime reads every value back and logs the difference (installation/sources.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from common.config import load_config


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
        if self.width <= 0 or self.height <= 0 or self.fps <= 0:
            raise ValueError(f"camera width/height/fps must be positive, got {self.width}x{self.height}@{self.fps}")
        if self.buffer_size < 1:
            raise ValueError("camera buffer_size must be >= 1")


@dataclass
class DisplayProfile:
    index: int = 0                         # SDL display index of the projector
    name: str | None = None                # optional: match the display by name instead of index
    width: int = 1920
    height: int = 1080
    fullscreen: bool = True

    def __post_init__(self):
        if self.width <= 0 or self.height <= 0:
            raise ValueError(f"display size must be positive, got {self.width}x{self.height}")


@dataclass
class TableProfile:
    paper_mm: tuple[float, float] = (420.0, 297.0)           # A3 landscape tracing paper
    roi: tuple[int, int, int, int] | None = None             # camera region of interest x, y, w, h

    def __post_init__(self):
        if min(self.paper_mm) <= 0:
            raise ValueError(f"paper_mm must be positive, got {self.paper_mm}")


@dataclass
class HardwareProfile:
    camera: CameraProfile = field(default_factory=CameraProfile)
    display: DisplayProfile = field(default_factory=DisplayProfile)
    table: TableProfile = field(default_factory=TableProfile)


def load_profile(path: str | Path) -> HardwareProfile:
    return load_config(path, HardwareProfile)
