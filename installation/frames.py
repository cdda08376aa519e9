"""What a frame source delivers: one grey image stamped at capture."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Frame:
    """A camera frame. `t_capture` is time.monotonic() at the grab, the origin of the ink-to-light
    latency; `seq` counts frames of one source (gaps mean frames that nobody processed)."""

    image: np.ndarray          # uint8 [H, W], grey
    t_capture: float
    seq: int
