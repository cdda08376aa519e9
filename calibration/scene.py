"""What the tool asks the projector to show, and the two small interfaces every flow runs against.

A flow (pen-dot, fiducial, filter-off, verify, pen test) only talks to a `Projector` and a `Camera`;
the pygame window with a V4L2 camera (calibration/interactive.py) and the simulated table
(calibration/simulate.py) both implement them, so `--simulate` runs exactly the live code path.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np


@dataclass
class Scene:
    """One projector frame, in projector pixels. Black background; everything else drawn white."""

    crosshairs: list[tuple[float, float]] = field(default_factory=list)
    outline: np.ndarray | None = None              # [4, 2] quad the technician aligns (fiducial)
    selected_corner: int | None = None
    rings: list[tuple[float, float, float]] = field(default_factory=list)   # x, y, radius (verify)
    boxes: list[tuple[float, float, float, float, str]] = field(default_factory=list)  # x, y, w, h, label
    image: np.ndarray | None = None                # full-frame uint8 pattern (filter-off path)
    lines: list[str] = field(default_factory=list)  # instructions / status text
    target: int | None = None                      # index of the crosshair the technician should mark
    request: str | None = None                     # a chore before Enter: 'lay-paper', 'remove-filter',
                                                   # 'restore-filter' (the simulated technician does it)


class Camera(Protocol):
    def read(self) -> np.ndarray:
        """The newest frame, uint8 gray [H, W]; raises on a lost camera."""


class Projector(Protocol):
    size: tuple[int, int]

    def show(self, scene: Scene) -> None: ...

    def keys(self) -> list[str]:
        """Keys pressed since the last call, pygame names ('space', 'return', 'escape', 'left', ...),
        prefixed 'shift+' when shift was held."""
        ...
