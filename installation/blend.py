"""From what is on the table to the new result: pixel crossfade or W+ latent interpolation.

A transition is a list of keyframes in time: the picture on screen when the result arrived, then the
result's images (one for a crossfade; `latent_steps` images rendered from interpolated W+ for the
latent mode, see installation/worker.py), spread over `duration_s`. Between two keyframes the pixels
are crossfaded with a smoothstep, so even a latent transition with few steps moves smoothly. A new
result arriving mid-transition starts from exactly what is on screen at that instant.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np

from installation.worker import Result


@dataclass
class BlendParams:
    mode: Literal["crossfade", "latent"] = "crossfade"
    duration_s: float = 0.5
    latent_steps: int = 4             # images rendered along the W+ path (latent mode)

    def __post_init__(self):
        if self.duration_s < 0 or self.latent_steps < 1:
            raise ValueError("blend: duration_s >= 0 and latent_steps >= 1 required")

    @property
    def steps(self) -> int:
        return self.latent_steps if self.mode == "latent" else 1


@dataclass
class _Key:
    t: float
    image: np.ndarray
    latent: object = None


def _smoothstep(a: float) -> float:
    return a * a * (3 - 2 * a)


class Blender:
    def __init__(self, params: BlendParams | None = None, size: int = 64):
        self.p = params or BlendParams()
        self._keys = [_Key(0.0, np.zeros((size, size, 3), np.float32))]
        self._result: Result | None = None
        self._announced = True
        self._completed = True

    @property
    def has_result(self) -> bool:
        return self._result is not None

    @property
    def result(self) -> Result | None:
        return self._result

    def push(self, result: Result, now: float, duration: float | None = None) -> None:
        """Start the transition to `result` (its images, oldest first)."""
        if not result.images:
            raise ValueError("a result without images cannot be shown")
        d = self.p.duration_s if duration is None else duration
        start = self.image_at(now)
        if start.shape != result.images[0].shape:     # the first result, or another model
            h, w = result.images[0].shape[:2]
            start = cv2.resize(start, (w, h), interpolation=cv2.INTER_AREA)
        n = len(result.images)
        latents = result.latents or [None] * n
        keys = [_Key(now, start, self.latent_at(now))]
        keys += [_Key(now + d * (k + 1) / n, img, lat) for k, (img, lat) in enumerate(zip(result.images, latents))]
        self._keys, self._result = keys, result
        self._announced = self._completed = False

    def busy(self, now: float) -> bool:
        return now < self._keys[-1].t

    def time_left(self, now: float) -> float:
        return max(0.0, self._keys[-1].t - now)

    def _segment(self, now: float) -> tuple[int, float]:
        keys = self._keys
        if now >= keys[-1].t or len(keys) == 1:
            return len(keys) - 1, 0.0
        i = max(0, int(np.searchsorted([k.t for k in keys], now, side="right")) - 1)
        a = (now - keys[i].t) / max(keys[i + 1].t - keys[i].t, 1e-9)
        return i, _smoothstep(min(max(a, 0.0), 1.0))

    def image_at(self, now: float) -> np.ndarray:
        i, a = self._segment(now)
        if a <= 0.0:
            return self._keys[i].image
        return (1 - a) * self._keys[i].image + a * self._keys[i + 1].image

    def latent_at(self, now: float):
        """W+ of the keyframe nearest to what is on screen (None where unknown)."""
        i, a = self._segment(now)
        return self._keys[i + 1 if a >= 0.5 else i].latent

    def frame(self, now: float) -> tuple[np.ndarray, Result | None, Result | None]:
        """(image to show, result shown for the first time, result shown in full for the first time).

        "Shown for the first time": the first frame with any weight on the new result, i.e. the
        first frame after it arrived; the display records the ink-to-light latency there."""
        img = self.image_at(now)
        first = full = None
        if not self._announced and now > self._keys[0].t:
            self._announced, first = True, self._result
        if not self._completed and now >= self._keys[-1].t:
            self._completed, full = True, self._result
        return img, first, full
