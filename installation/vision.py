"""From a camera frame to the encoder's sketch: the one binarizer and the stateful ink tracker.

Import-light on purpose (numpy and cv2 only): training imports `binarize_sketch` so that its sketch
inputs look exactly like camera inputs.

Per frame (`Vision.process`):
1. crop the paper out of the camera frame with the calibration (cv2.remap, lens included), at
   `work_size`;
2. flat-field: divide by the blank-paper reference (captured at start and on a key), which removes the
   uneven IR illumination and vignetting;
3. `ink_mask`: adaptive threshold against the local paper level (grey closing: wider than any pen
   stroke), morphological closing, small-component removal;
4. hand mask: something above the tracing paper is blurred by it and large, so a low-pass of the
   flat-field that stays dark is a hand or a pen, never ink;
5. temporal persistence: ink is committed after `persist_frames` consecutive sightings outside the
   hand mask and is never erased by occlusion; only a new sheet clears it and a paper shift moves it;
6. the committed ink, downsampled to the encoder's side, is the sketch: float32, paper = 1, ink = 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from installation.frames import Frame

PAPER_LEVEL = 200.0     # flat-fielded paper grey: headroom above it for paper brighter than the reference


@dataclass
class BinarizeParams:
    background_frac: float = 0.1     # local paper-level window, fraction of the side; wider than strokes
    ink_ratio: float = 0.78          # ink = darker than this fraction of the local paper level
    close_px: int = 1                # closing radius bridging strokes broken by noise (0 = off)
    speck_area: float = 6.0          # components smaller than this (px at a 256 px side) are noise
    thicken_px: int = 0              # dilation radius normalising thin pens to the training width
    min_coverage: float = 0.3        # downsampling: an output pixel is ink at this ink coverage

    def __post_init__(self):
        if not 0 < self.background_frac < 1:
            raise ValueError(f"background_frac must be in (0, 1), got {self.background_frac}")
        if not 0 < self.ink_ratio < 1:
            raise ValueError(f"ink_ratio must be in (0, 1), got {self.ink_ratio}")
        if not 0 < self.min_coverage <= 1:
            raise ValueError(f"min_coverage must be in (0, 1], got {self.min_coverage}")
        if self.close_px < 0 or self.thicken_px < 0 or self.speck_area < 0:
            raise ValueError("close_px, thicken_px and speck_area must be >= 0")


@dataclass
class VisionParams:
    work_size: int = 256                 # side of the paper crop all vision runs at
    binarize: BinarizeParams = field(default_factory=BinarizeParams)
    border_frac: float = 0.03            # ink this close to the crop edge is ignored: the paper edge, a nudged sheet
    reference_frames: int = 8            # frames whose median is the blank-paper reference
    reference_close_frac: float = 0.03   # closing of the reference: ink left on a "blank" sheet vanishes
    persist_frames: int = 3              # consecutive sightings outside the hand before ink is committed
    hand_ratio: float = 0.82             # low-passed flat-field darker than this: something above the paper
    hand_blur_frac: float = 0.025        # low-pass sigma, fraction of the side
    hand_min_area_frac: float = 0.003    # smaller dark blobs are not a hand
    hand_margin_frac: float = 0.05       # dilation of the hand mask (pen shaft, soft shadow edges)
    change_min_px: int = 4               # newly committed pixels that make an "ink changed" event
    vanish_frames: int = 6               # frames the committed ink must stay missing before a decision
    vanish_fraction: float = 0.7         # "missing": less than this fraction of it visible outside the hand
    visible_tolerance_px: int = 1        # committed ink still counts as visible this far from a sighting
    shift_match: float = 0.75            # a shifted copy of the ink must explain this fraction of what is seen

    def __post_init__(self):
        if self.work_size < 32:
            raise ValueError(f"work_size must be >= 32, got {self.work_size}")
        if self.reference_frames < 1 or self.persist_frames < 1 or self.vanish_frames < 1:
            raise ValueError("reference_frames, persist_frames and vanish_frames must be >= 1")
        if not 0 < self.hand_ratio < 1:
            raise ValueError(f"hand_ratio must be in (0, 1), got {self.hand_ratio}")


# ----------------------------------------------------------------------------------------------
# pure functions


def _odd(n: float) -> int:
    n = max(3, int(round(n)))
    return n if n % 2 else n + 1


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def remove_specks(mask: np.ndarray, min_area: float) -> np.ndarray:
    """Drop 8-connected components smaller than `min_area` pixels."""
    if min_area <= 1 or not mask.any():
        return mask
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area
    keep[0] = False
    return keep[labels]


def ink_mask(gray: np.ndarray, params: BinarizeParams | None = None) -> np.ndarray:
    """Bool ink mask at the input's resolution (True = ink) of a grey image where paper is bright."""
    p = params or BinarizeParams()
    if gray.ndim != 2 or gray.dtype != np.uint8:
        raise ValueError(f"expected a uint8 grey image [H, W], got {gray.dtype} {gray.shape}")
    side = max(gray.shape)
    k = _odd(p.background_frac * side)
    # Grey closing removes dark features narrower than k (the ink) and keeps the paper level,
    # including its gradients, so the threshold adapts to whatever lighting is left.
    background = cv2.morphologyEx(gray, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    background = cv2.blur(background, (k // 2 | 1, k // 2 | 1)).astype(np.float32)
    ink = gray.astype(np.float32) < p.ink_ratio * background
    if p.close_px:
        ink = cv2.morphologyEx(ink.astype(np.uint8), cv2.MORPH_CLOSE, _disk(p.close_px)).astype(bool)
    ink = remove_specks(ink, p.speck_area * (side / 256.0) ** 2)
    if p.thicken_px:
        ink = cv2.dilate(ink.astype(np.uint8), _disk(p.thicken_px)).astype(bool)
    return ink


def downsample_mask(ink: np.ndarray, size: int, min_coverage: float = 0.3) -> np.ndarray:
    """Bool ink mask -> float32 [size, size] sketch, paper = 1, ink = 0.

    Area averaging gives each output pixel its ink coverage; thresholding it low keeps a stroke
    thinner than an output pixel instead of letting it fade away.
    """
    cov = ink.astype(np.float32)
    if cov.shape != (size, size):
        cov = cv2.resize(cov, (size, size), interpolation=cv2.INTER_AREA)
    return (cov < min_coverage).astype(np.float32)


def binarize_sketch(gray: np.ndarray, size: int, params: BinarizeParams | None = None) -> np.ndarray:
    """The one binarizer: flat-fielded uint8 grey [H, W] (paper bright, ink dark) -> float32
    [size, size], paper = 1.0, ink = 0.0. Used on camera frames and on training sketches alike."""
    p = params or BinarizeParams()
    out = downsample_mask(ink_mask(gray, p), size, p.min_coverage)
    assert out.shape == (size, size) and out.dtype == np.float32
    return out


def make_reference(crops: list[np.ndarray], close_frac: float = 0.03) -> np.ndarray:
    """Blank-paper reference (float32, >= 1) from paper crops: the median drops a hand passing by,
    the grey closing drops ink left on the sheet, so a not-quite-blank sheet still works."""
    stack = np.stack(crops).astype(np.float32)
    ref = np.median(stack, axis=0) if len(crops) > 1 else stack[0]
    k = _odd(close_frac * max(ref.shape))
    ref = cv2.morphologyEx(ref, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k)))
    ref = cv2.GaussianBlur(ref, (0, 0), 1.5)
    return np.maximum(ref, 1.0)


def flat_field(crop: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ratio float32: paper ~1, ink and shadows < 1; uint8 image with paper at PAPER_LEVEL)."""
    ratio = crop.astype(np.float32) / reference
    return ratio, np.clip(ratio * PAPER_LEVEL, 0, 255).astype(np.uint8)


def hand_mask(ratio: np.ndarray, ink: np.ndarray, p: VisionParams) -> np.ndarray:
    """Hands and pens above the paper: large regions that stay dark after a low-pass.

    Ink (committed, and what the threshold already calls ink) is painted as paper first, so a dense
    drawing or a scribbled fill never looks like a hand; the inside of a hand is wider than the
    threshold's window, so it is never called ink and stays dark.
    """
    side = ratio.shape[0]
    small_side = max(16, side // 4)
    r = np.where(ink, np.float32(1.0), ratio)
    small = cv2.resize(r, (small_side, small_side), interpolation=cv2.INTER_AREA)
    small = cv2.GaussianBlur(small, (0, 0), max(0.5, p.hand_blur_frac * small_side))
    dark = small < p.hand_ratio
    b = int(round(2 * p.border_frac * small_side))
    if b:   # the table showing at the crop's edge (a nudged sheet) is no hand
        dark[:b], dark[-b:], dark[:, :b], dark[:, -b:] = False, False, False, False
    dark = remove_specks(dark, p.hand_min_area_frac * small_side ** 2)
    if not dark.any():
        return np.zeros((side, side), bool)
    margin = max(1, int(round(p.hand_margin_frac * small_side)))
    dark = cv2.dilate(dark.astype(np.uint8), _disk(margin))
    return cv2.resize(dark, (side, side), interpolation=cv2.INTER_NEAREST).astype(bool)


def tolerant_iou(pred: np.ndarray, true: np.ndarray, tol_px: int = 2) -> float:
    """IoU of two ink masks where a pixel within `tol_px` of the other mask counts as matched:
    matched = (|pred near true| + |true near pred|) / 2, IoU = matched / (|pred| + |true| - matched)."""
    pred, true = pred.astype(bool), true.astype(bool)
    if not pred.any() and not true.any():
        return 1.0
    k = _disk(tol_px)
    near_true = cv2.dilate(true.astype(np.uint8), k).astype(bool)
    near_pred = cv2.dilate(pred.astype(np.uint8), k).astype(bool)
    matched = ((pred & near_true).sum() + (true & near_pred).sum()) / 2.0
    return float(matched / (pred.sum() + true.sum() - matched))


def _shift_mask(mask: np.ndarray, dx: float, dy: float) -> np.ndarray:
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    moved = cv2.warpAffine(mask.astype(np.float32), m, mask.shape[::-1], flags=cv2.INTER_LINEAR)
    return moved > 0.5


# ----------------------------------------------------------------------------------------------
# the stateful tracker


@dataclass
class VisionResult:
    frame: Frame
    ready: bool                     # a blank reference exists (before: nothing is committed)
    paper: np.ndarray               # uint8 [W, W] crop of the paper
    flat: np.ndarray                # uint8 [W, W] flat-fielded crop
    candidate: np.ndarray           # bool [W, W]: ink seen in this frame
    hand_mask: np.ndarray           # bool [W, W]
    committed: np.ndarray           # bool [W, W]: persistent ink
    sketch: np.ndarray              # float32 [S, S] encoder input, paper = 1, ink = 0
    ink_version: int                # increments whenever the committed ink changes
    t_ink: float | None             # with `changed`: capture time of the oldest ink in this change
    changed: bool = False
    hand: bool = False
    new_sheet: bool = False
    paper_shift: bool = False

    @property
    def ink_px(self) -> int:
        return int(self.committed.sum())


class Vision:
    """Ink tracking over frames. Not thread-safe: the render loop owns it."""

    def __init__(self, cam_to_paper_maps: tuple[np.ndarray, np.ndarray], camera_size: tuple[int, int],
                 sketch_size: int, params: VisionParams | None = None):
        self.p = params or VisionParams()
        w = self.p.work_size
        mx, my = cam_to_paper_maps
        if mx.shape != (w, w) or my.shape != (w, w):
            raise ValueError(f"remap grids must be [{w}, {w}] (work_size), got {mx.shape} {my.shape}")
        self._maps = (mx, my)
        self._camera_size = tuple(camera_size)
        self._scaled = None
        self.sketch_size = sketch_size
        self.reference: np.ndarray | None = None
        self._ref_crops: list[np.ndarray] = []
        self._capturing = False
        self.ink_version = 0
        self.reset_ink()

    # -- operator actions ------------------------------------------------------------------------

    def capture_reference(self) -> None:
        """Average the next `reference_frames` crops into a new blank-paper reference."""
        self._ref_crops = []
        self._capturing = True

    @property
    def capturing(self) -> bool:
        return self._capturing

    def reset_ink(self) -> None:
        """Forget all ink (ink_version stays monotonic, so every consumer sees later changes)."""
        w = self.p.work_size
        self.committed = np.zeros((w, w), bool)
        self._streak = np.zeros((w, w), np.uint16)
        self._streak_t = np.zeros((w, w), np.float64)
        self._ink_t = np.zeros((w, w), np.float64)     # capture time each committed pixel was first seen
        self._known = np.zeros((w, w), bool)           # the ink of the last change, grown by 1 px
        self._sketch = np.ones((self.sketch_size, self.sketch_size), np.float32)
        self._vanish = 0
        self._vanish_t: float | None = None

    # -- per frame -------------------------------------------------------------------------------

    def crop(self, image: np.ndarray) -> np.ndarray:
        mx, my = self._maps_for(image.shape[1], image.shape[0])
        return cv2.remap(image, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    def _maps_for(self, width: int, height: int):
        """A camera that delivers another size than calibrated: scale the grids (and say so once)."""
        if (width, height) == self._camera_size:
            return self._maps
        if self._scaled is None or self._scaled[0] != (width, height):
            from loguru import logger

            cw, ch = self._camera_size
            logger.warning(f"camera delivers {width}x{height} but the calibration is for {cw}x{ch}; "
                           "scaling the paper crop (recalibrate for best accuracy)")
            mx, my = self._maps
            self._scaled = ((width, height), (mx * (width / cw), my * (height / ch)))
        return self._scaled[1]

    def process(self, frame: Frame) -> VisionResult:
        paper = self.crop(frame.image)
        if self._capturing:
            self._ref_crops.append(paper)
            if len(self._ref_crops) >= self.p.reference_frames:
                self.reference = make_reference(self._ref_crops, self.p.reference_close_frac)
                self._capturing = False
                self._ref_crops = []
        w = self.p.work_size
        empty = np.zeros((w, w), bool)
        if self.reference is None:
            return VisionResult(frame, False, paper, paper, empty, empty, self.committed, self._sketch,
                                self.ink_version, None)
        ratio, flat = flat_field(paper, self.reference)
        candidate = ink_mask(flat, self.p.binarize)
        b = int(round(self.p.border_frac * w))
        if b:
            candidate[:b], candidate[-b:], candidate[:, :b], candidate[:, -b:] = False, False, False, False
        hand = hand_mask(ratio, self.committed | candidate, self.p)
        res = VisionResult(frame, True, paper, flat, candidate, hand, self.committed, self._sketch,
                           self.ink_version, None, hand=bool(hand.any()))
        if not self._vanishing(candidate, hand, frame.t_capture, res):
            self._persist(candidate, hand, frame.t_capture, res)
        res.committed, res.sketch, res.ink_version = self.committed, self._sketch, self.ink_version
        return res

    def _persist(self, candidate, hand, t, res: VisionResult) -> None:
        visible = candidate & ~hand
        starting = visible & (self._streak == 0)
        self._streak_t[starting] = t
        # Under the hand the count is frozen: neither confirmed nor forgotten.
        self._streak = np.where(visible, np.minimum(self._streak + 1, 60000),
                                np.where(hand, self._streak, 0)).astype(np.uint16)
        new = (self._streak >= self.p.persist_frames) & ~self.committed
        if not new.any():
            return
        self._ink_t[new] = self._streak_t[new]
        self.committed = self.committed | new          # a new array: earlier results keep their view
        # Noise keeps confirming a stroke's anti-aliased rim now and then; such thickening is committed
        # but is no news: only ink beyond 1 px of what the model last saw counts as a change.
        novel = self.committed & ~self._known
        if novel.sum() >= self.p.change_min_px:
            self._bump(res, float(self._ink_t[novel].min()))

    def _bump(self, res: VisionResult, t_ink: float | None) -> None:
        self.ink_version += 1
        self._known = cv2.dilate(self.committed.astype(np.uint8), _disk(1)).astype(bool)
        self._sketch = downsample_mask(self.committed, self.sketch_size, self.p.binarize.min_coverage)
        res.changed, res.t_ink = True, t_ink

    def _vanishing(self, candidate, hand, t, res: VisionResult) -> bool:
        """New sheet or paper shift: committed ink that stays unseen where nothing hides it.

        Returns True while a decision is pending (nothing is committed meanwhile, so a shifted
        drawing is not committed a second time beside the old one)."""
        outside = self.committed & ~hand
        total = int(self.committed.sum())
        if total < self.p.change_min_px or outside.sum() < 0.3 * total:
            self._vanish, self._vanish_t = 0, None
            return False
        near = cv2.dilate(candidate.astype(np.uint8), _disk(self.p.visible_tolerance_px)).astype(bool)
        seen = (outside & near).sum() / outside.sum()
        if seen >= self.p.vanish_fraction:
            self._vanish, self._vanish_t = 0, None
            return False
        self._vanish += 1
        self._vanish_t = t if self._vanish_t is None else self._vanish_t
        if self._vanish < self.p.vanish_frames:
            return True
        self._decide_vanished(candidate & ~hand, res)
        return True

    def _decide_vanished(self, seen: np.ndarray, res: VisionResult) -> None:
        t0 = self._vanish_t
        old = self.committed
        self.reset_ink()
        if seen.sum() >= self.p.change_min_px:
            (dx, dy), _ = cv2.phaseCorrelate(old.astype(np.float32), seen.astype(np.float32))
            moved = _shift_mask(old, dx, dy)
            near = cv2.dilate(seen.astype(np.uint8), _disk(self.p.visible_tolerance_px)).astype(bool)
            explained = (moved & near).sum() / max(1, moved.sum())
            if explained >= self.p.shift_match:
                self.committed = moved
                res.paper_shift = True
            else:
                self.committed = seen.copy()           # another sheet, already drawn on
                res.new_sheet = True
        else:
            res.new_sheet = True
        self._bump(res, t0)
