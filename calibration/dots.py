"""Finding the pen dots a technician adds: frame differencing with a subpixel centroid.

The IR camera cannot see the projector, but it sees carbon ink. Each new dot is the only thing
that got darker between two stable frames; its centre is the darkening-weighted centroid, which
for a round dot a few pixels wide is good to ~0.1 camera px, far below the technician's hand.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass
class DotParams:
    min_contrast_dn: float = 12.0      # a dot must darken the paper by at least this much (8-bit DN)
    noise_sigmas: float = 6.0          # ... and by this many noise sigmas of the difference image
    min_area_px: int = 3               # smaller: sensor noise or dust
    max_area_px: int = 400             # larger: a hand, a shadow, a moved sheet, not a pen dot
    motion_dn: float = 3.0             # an 8x8 block changing by this much between frames = movement
    stable_frames: int = 3             # frames without movement before a frame counts as settled
    moved_fraction: float = 0.02       # this much of the frame changed: the paper or the camera moved


@dataclass
class Blob:
    x: float
    y: float
    area: int
    contrast: float                    # peak darkening, DN

    @property
    def xy(self) -> tuple[float, float]:
        return (self.x, self.y)


@dataclass
class Changes:
    """What got darker between a reference and a new frame."""

    dots: list[Blob] = field(default_factory=list)
    large: list[Blob] = field(default_factory=list)     # too big to be a dot
    changed_fraction: float = 0.0
    noise_dn: float = 0.0


def _robust_sigma(x: np.ndarray) -> float:
    sample = x[::4, ::4].ravel()
    return float(1.4826 * np.median(np.abs(sample - np.median(sample))))


def detect_new_dots(before: np.ndarray, after: np.ndarray, params: DotParams | None = None) -> Changes:
    """Everything that darkened from `before` to `after` (uint8 gray frames of the same size)."""
    p = params or DotParams()
    assert before.shape == after.shape and before.ndim == 2, \
        f"frames must be gray and equal in size, got {before.shape} and {after.shape}"
    diff = before.astype(np.float32) - after.astype(np.float32)
    smooth = cv2.GaussianBlur(diff, (0, 0), 1.0)
    smooth -= float(np.median(smooth[::4, ::4]))        # a global exposure drift is not ink
    noise = _robust_sigma(smooth)
    thresh = max(p.min_contrast_dn * 0.5, p.noise_sigmas * noise)
    mask = (smooth > thresh).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    out = Changes(changed_fraction=float(mask.mean()), noise_dn=noise)
    for i in range(1, n):
        x, y, w, h, area = stats[i]
        peak = float(smooth[y:y + h, x:x + w][labels[y:y + h, x:x + w] == i].max())
        if area < p.min_area_px or peak < p.min_contrast_dn:
            continue
        if area > p.max_area_px:
            out.large.append(Blob(x + w / 2, y + h / 2, int(area), peak))
            continue
        out.dots.append(_centroid(diff, labels, i, (x, y, w, h), peak, int(area), noise))
    return out


def _centroid(diff, labels, i, box, peak, area, noise) -> Blob:
    """Darkening-weighted centroid over the blob grown by 2 px, so its faint rim counts symmetrically."""
    x, y, w, h = box
    x0, y0 = max(x - 3, 0), max(y - 3, 0)
    x1, y1 = min(x + w + 3, diff.shape[1]), min(y + h + 3, diff.shape[0])
    region = cv2.dilate((labels[y0:y1, x0:x1] == i).astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    wgt = np.clip(diff[y0:y1, x0:x1] - noise, 0, None) * region
    ys, xs = np.mgrid[y0:y1, x0:x1]
    s = float(wgt.sum())
    return Blob(float((wgt * xs).sum() / s), float((wgt * ys).sum() / s), area, peak)


class DotWatcher:
    """Feeds on live frames; reports what got darker once the hand is gone and the frame settles.

    The reference is the last settled frame the caller accepted (`rebase`); a report does not move
    it, so fixing a problem (covering a stray mark) and letting the frame settle again re-checks
    against the same reference.
    """

    def __init__(self, params: DotParams | None = None):
        self.p = params or DotParams()
        self.reference: np.ndarray | None = None
        self._prev_small: np.ndarray | None = None
        self._still = 0

    def _small(self, frame: np.ndarray) -> np.ndarray:
        h, w = frame.shape
        return cv2.resize(frame, (w // 8, h // 8), interpolation=cv2.INTER_AREA).astype(np.float32)

    def rebase(self, frame: np.ndarray) -> None:
        self.reference = frame.copy()
        self._prev_small = self._small(frame)
        self._still = self.p.stable_frames

    def update(self, frame: np.ndarray) -> Changes | None:
        """Returns the changes against the reference once per settling (any change in an 8x8 block,
        a hand or a new dot, starts a new settling), else None."""
        small = self._small(frame)
        if self._prev_small is None or self.reference is None:
            self.rebase(frame)
            return None
        moving = bool((np.abs(small - self._prev_small) > self.p.motion_dn).any())
        self._prev_small = small
        if moving:
            self._still = 0
            return None
        self._still += 1
        if self._still != self.p.stable_frames:
            return None
        changes = detect_new_dots(self.reference, frame, self.p)
        return changes if (changes.dots or changes.large) else None
