"""A synthetic drawing table: what the IR camera under the table would see, for `--demo` and tests.

The renderer models, in this order: a square sheet of tracing paper with fibre texture, seen at a slight
perspective on a darker table; pen strokes (ink coverage drawn progressively along stroke paths);
uneven IR illumination (a gradient of `light_ratio` across the sheet) and lens vignetting; a hand and
pen above the paper, which the diffusing paper turns into soft shadows; optical blur; sensor noise.

Drawings come from a procedural doodle generator (closed blobs, boxes, zigzags, spirals, curves, dots,
QuickDraw-like: a few strokes as polylines in [0, 1]) so nothing of any dataset ships; tests also feed
real QuickDraw strokes through `TableRenderer` and `rasterize`.

The script (`SyntheticTable`) loops: an idle blank sheet, a visitor drawing stroke by stroke, a hold
(sometimes a hand passing over, sometimes the sheet nudged), then a new sheet.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass

import cv2
import numpy as np

from installation.frames import Frame
from installation.sources import FrameSource, Pacer, SourceError

Stroke = np.ndarray          # float [N, 2], x, y in [0, 1] paper units
Drawing = list[Stroke]


@dataclass
class SyntheticParams:
    width: int = 640
    height: int = 480
    fps: float = 30.0
    seed: int = 0
    canvas: int = 512                 # paper rendered at this side before the camera warp
    paper_frac: float = 0.8           # paper side as a fraction of the frame height
    pen_width: float = 0.011          # fraction of the paper side
    ink_reflectance: float = 0.25
    table_reflectance: float = 0.3
    paper_level: float = 215.0        # grey of blank paper where the light is brightest
    light_ratio: float = 3.0          # brightest / darkest IR illumination across the sheet
    vignette: float = 0.3             # relative fall-off in the frame corners
    blur_sigma: float = 0.8           # optics, camera px
    noise_sigma: float = 3.0          # sensor noise, grey levels
    hand_depth: float = 0.6           # shadow of the hand at its centre (fraction of light removed)
    pen_speed: float = 0.7            # paper sides per second with the pen down
    travel_speed: float = 1.5         # paper sides per second with the pen up
    idle_s: float = 2.0
    hold_s: float = 4.0
    pass_prob: float = 0.5            # per hold: a hand passes over the drawing
    shift_prob: float = 0.3           # per hold: the sheet is nudged
    shift_px: float = 8.0             # camera px
    realtime: bool = True             # pace to fps (False: as fast as read() is called; scene time = seq / fps)

    def __post_init__(self):
        if self.width < 64 or self.height < 64 or self.fps <= 0 or self.canvas < 64:
            raise ValueError("synthetic table: width, height, canvas >= 64 and fps > 0 required")
        if self.light_ratio < 1:
            raise ValueError(f"light_ratio must be >= 1, got {self.light_ratio}")


# ----------------------------------------------------------------------------------------------
# doodles


def _closed_blob(rng, c, r) -> Stroke:
    n = int(rng.integers(18, 36))
    th = np.linspace(0, 2 * np.pi * rng.uniform(1.0, 1.08), n)
    rad = np.ones(n)
    for k in (2, 3, 4):
        rad += rng.normal(0, 0.12 / k) * np.cos(k * th + rng.uniform(0, 2 * np.pi))
    sx, sy = rng.uniform(0.7, 1.3, 2)
    return np.c_[c[0] + r * sx * rad * np.cos(th), c[1] + r * sy * rad * np.sin(th)]


def _box(rng, c, r) -> list[Stroke]:
    w, h = r * rng.uniform(0.7, 1.3), r * rng.uniform(0.6, 1.2)
    pts = np.array([[-w, -h], [w, -h], [w, h], [-w, h], [-w, -h]]) + c + rng.normal(0, r * 0.03, (5, 2))
    out = [pts]
    if rng.random() < 0.5:   # a roof: the house every child draws
        out.append(np.array([[-w, -h], [0, -h - r * rng.uniform(0.6, 1.0)], [w, -h]]) + c)
    return out


def _zigzag(rng, c, r) -> Stroke:
    n = int(rng.integers(4, 9))
    x = np.linspace(-r, r, n)
    y = np.where(np.arange(n) % 2, 1, -1) * r * rng.uniform(0.15, 0.35)
    return _rotate(np.c_[x, y], rng.uniform(0, np.pi)) + c


def _spiral(rng, c, r) -> Stroke:
    turns = rng.uniform(1.5, 3.0)
    th = np.linspace(0, 2 * np.pi * turns, int(30 * turns))
    rad = r * th / th[-1]
    return np.c_[c[0] + rad * np.cos(th), c[1] + rad * np.sin(th)]


def _curve(rng, c, r) -> Stroke:
    n = int(rng.integers(8, 20))
    heading = rng.uniform(0, 2 * np.pi)
    turn = rng.normal(0, 0.35)
    pts = [np.array(c, float)]
    for _ in range(n):
        heading += turn + rng.normal(0, 0.25)
        pts.append(pts[-1] + (2 * r / n) * np.array([np.cos(heading), np.sin(heading)]))
    return np.array(pts)


def _line(rng, c, r) -> Stroke:
    a = rng.uniform(0, np.pi)
    d = r * np.array([np.cos(a), np.sin(a)])
    return np.array([c - d, c + d])


def _dot(rng, c, r) -> Stroke:
    return np.array([c, c + rng.normal(0, 0.004, 2)])


def _rotate(p: np.ndarray, a: float) -> np.ndarray:
    m = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return p @ m.T


def doodle(rng: np.random.Generator) -> Drawing:
    """A QuickDraw-like drawing: one main shape and a few details, fitted into [0.08, 0.92]²."""
    c0 = np.array([0.5, 0.5])
    main = rng.choice(["blob", "box", "spiral"], p=[0.55, 0.3, 0.15])
    strokes: Drawing = {"blob": lambda: [_closed_blob(rng, c0, 0.3)],
                        "box": lambda: _box(rng, c0, 0.28),
                        "spiral": lambda: [_spiral(rng, c0, 0.3)]}[main]()
    details = [_closed_blob, _zigzag, _curve, _line, _dot, _spiral]
    for _ in range(int(rng.integers(1, 6))):
        f = details[int(rng.integers(len(details)))]
        c = c0 + rng.uniform(-0.3, 0.3, 2)
        r = rng.uniform(0.04, 0.14)
        strokes.append(f(rng, c, r))
    if rng.random() < 0.6:   # eyes: the dots every face gets
        for dx in (-0.08, 0.08):
            strokes.append(_dot(rng, c0 + np.array([dx, -0.06]), 0.0))
    return fit_drawing(strokes)


def fit_drawing(strokes: Drawing, margin: float = 0.08) -> Drawing:
    """Scale a drawing uniformly into [margin, 1 - margin]², centred (QuickDraw's own normalisation)."""
    pts = np.concatenate(strokes)
    lo, hi = pts.min(0), pts.max(0)
    scale = (1 - 2 * margin) / max(float((hi - lo).max()), 1e-6)
    offset = margin + ((1 - 2 * margin) - (hi - lo) * scale) / 2
    return [(s - lo) * scale + offset for s in strokes]


def quickdraw_strokes(drawing: list) -> Drawing:
    """QuickDraw 'simplified' strokes [[xs], [ys]] (0..255) -> polylines in [0, 1], with a margin."""
    strokes = [np.c_[np.asarray(xs, float), np.asarray(ys, float)] / 255.0 for xs, ys in drawing]
    return fit_drawing(strokes)


# ----------------------------------------------------------------------------------------------
# rasterisation


def _partial(stroke: Stroke, length: float) -> Stroke:
    """The first `length` (paper units) of a polyline."""
    seg = np.linalg.norm(np.diff(stroke, axis=0), axis=1)
    cum = np.r_[0, np.cumsum(seg)]
    if length >= cum[-1]:
        return stroke
    i = int(np.searchsorted(cum, length, side="right"))
    f = (length - cum[i - 1]) / max(seg[i - 1], 1e-9)
    return np.vstack([stroke[:i], stroke[i - 1] + f * (stroke[i] - stroke[i - 1])])


def stroke_length(stroke: Stroke) -> float:
    return float(np.linalg.norm(np.diff(stroke, axis=0), axis=1).sum())


def rasterize(strokes: Drawing, size: int, width: float, antialias: bool = False) -> np.ndarray:
    """Ink of `strokes` on a size² grid: uint8 coverage 0..255 (antialias) or bool mask.

    `width` is in paper units (fraction of the side)."""
    canvas = np.zeros((size, size), np.uint8)
    draw_polylines(canvas, strokes, width * size, antialias)
    return canvas if antialias else canvas > 127


def draw_polylines(canvas: np.ndarray, strokes: Drawing, width_px: float, antialias: bool) -> None:
    size = canvas.shape[0]
    shift = 4                                     # sub-pixel vertex precision
    thick = max(1, int(round(width_px)))
    for s in strokes:
        if len(s) == 0:
            continue
        pts = np.round(s * size * (1 << shift)).astype(np.int32).reshape(-1, 1, 2)
        if len(s) == 1 or np.allclose(s, s[0]):
            cv2.circle(canvas, tuple(int(v) for v in pts[0, 0]), int(round(thick / 2 * (1 << shift))), 255, -1,
                       cv2.LINE_AA if antialias else cv2.LINE_8, shift)
            continue
        cv2.polylines(canvas, [pts], False, 255, thick, cv2.LINE_AA if antialias else cv2.LINE_8, shift)


# ----------------------------------------------------------------------------------------------
# the camera view


@dataclass
class HandPose:
    tip: tuple[float, float]          # pen tip, camera px
    hand: tuple[float, float]         # centre of the hand, camera px
    radius: float                     # camera px


def _square(side: float) -> np.ndarray:
    return np.float32([[0, 0], [side, 0], [side, side], [0, side]])


class TableRenderer:
    """Pure rendering of one camera frame from ink coverage, paper pose and hand pose."""

    def __init__(self, p: SyntheticParams):
        self.p = p
        rng = np.random.default_rng(p.seed)
        self.base_corners = self._paper_quad(rng)
        self.texture = self._paper_texture(rng)
        self.illumination = self._illumination(rng)
        self.noise_rng = np.random.default_rng(p.seed + 1)
        self._reflect_key, self._reflect = None, None
        self._bank: np.ndarray | None = None

    # -- static parts ----------------------------------------------------------------------------

    def _paper_quad(self, rng) -> np.ndarray:
        w, h, p = self.p.width, self.p.height, self.p
        side = p.paper_frac * h
        c = np.array([w / 2, h / 2]) + rng.normal(0, 0.01 * h, 2)
        quad = _square(side) - side / 2 + c
        quad[:2, 0] += np.array([1, -1]) * 0.03 * side       # the far edge looks shorter
        return (quad + rng.normal(0, 0.006 * side, (4, 2))).astype(np.float64)

    def _paper_texture(self, rng) -> np.ndarray:
        c = self.p.canvas
        fibres = cv2.GaussianBlur(rng.normal(0, 1, (c, c)).astype(np.float32), (0, 0), 1.2)
        cloud = cv2.resize(rng.normal(0, 1, (8, 8)).astype(np.float32), (c, c), interpolation=cv2.INTER_CUBIC)
        return (1.0 + 0.025 * fibres / fibres.std() + 0.015 * cloud).astype(np.float32)

    def _illumination(self, rng) -> np.ndarray:
        """paper_level * light_ratio^(-u) * vignette, u in [0, 1] across the sheet along a random axis."""
        w, h = self.p.width, self.p.height
        y, x = np.mgrid[0:h, 0:w].astype(np.float32)
        a = rng.uniform(0, 2 * np.pi)
        d = np.cos(a) * x + np.sin(a) * y
        proj = self.base_corners @ np.array([np.cos(a), np.sin(a)])
        u = np.clip((d - proj.min()) / (proj.max() - proj.min()), -0.2, 1.2)
        gradient = self.p.light_ratio ** (-u)
        r2 = ((x - w / 2) ** 2 + (y - h / 2) ** 2) / ((w / 2) ** 2 + (h / 2) ** 2)
        return (self.p.paper_level * gradient * (1 - self.p.vignette * r2)).astype(np.float32)

    # -- per frame -------------------------------------------------------------------------------

    def corners(self, pose: tuple[float, float, float] = (0.0, 0.0, 0.0)) -> np.ndarray:
        """Paper corners (TL, TR, BR, BL) in camera px after a shift (dx, dy px, angle degrees)."""
        dx, dy, ang = pose
        c = self.base_corners.mean(0)
        return _rotate(self.base_corners - c, math.radians(ang)) + c + np.array([dx, dy])

    def paper_to_cam(self, pose=(0.0, 0.0, 0.0)) -> np.ndarray:
        return cv2.getPerspectiveTransform(_square(self.p.canvas), np.float32(self.corners(pose)))

    def reflectance(self, ink_coverage: np.ndarray, pose=(0.0, 0.0, 0.0)) -> np.ndarray:
        """Camera-space reflectance of paper + ink + table (float32 [H, W])."""
        p = self.p
        paper = self.texture * (1 - (ink_coverage.astype(np.float32) / 255.0) * (1 - p.ink_reflectance))
        # Paper over table: warp (paper - table) with a zero border, then add the table back.
        return cv2.warpPerspective(paper - p.table_reflectance, self.paper_to_cam(pose), (p.width, p.height),
                                   flags=cv2.INTER_AREA if p.canvas > p.height else cv2.INTER_LINEAR,
                                   borderMode=cv2.BORDER_CONSTANT, borderValue=0) + p.table_reflectance

    def shadow(self, hand: HandPose | None) -> np.ndarray | float:
        """Fraction of light reaching the camera (float32 [H, W], 1 = no shadow)."""
        if hand is None:
            return 1.0
        p, q = self.p, 4                            # shadows are soft: render them at quarter resolution
        sw, sh = p.width // q, p.height // q
        body = np.zeros((sh, sw), np.float32)
        hx, hy = hand.hand[0] / q, hand.hand[1] / q
        r = hand.radius / q
        ang = math.degrees(math.atan2(hand.hand[1] - hand.tip[1], hand.hand[0] - hand.tip[0]))
        cv2.ellipse(body, (int(hx), int(hy)), (int(r * 1.3), int(r)), ang, 0, 360, 1.0, -1)
        # forearm: leaves the frame away from the pen
        far = (int(hx + 6 * (hx - hand.tip[0] / q)), int(hy + 6 * (hy - hand.tip[1] / q)))
        cv2.line(body, (int(hx), int(hy)), far, 1.0, max(1, int(r * 1.4)))
        body = cv2.GaussianBlur(body, (0, 0), max(1.0, r * 0.35))
        pen = np.zeros((sh, sw), np.float32)
        cv2.line(pen, (int(hand.tip[0] / q), int(hand.tip[1] / q)), (int(hx), int(hy)), 1.0,
                 max(1, int(r * 0.18)))
        pen = cv2.GaussianBlur(pen, (0, 0), max(0.7, r * 0.08))
        occ = np.maximum(body * p.hand_depth, pen * 0.5)
        occ = cv2.resize(occ, (p.width, p.height), interpolation=cv2.INTER_LINEAR)
        return 1.0 - occ

    def render(self, ink_coverage: np.ndarray, pose=(0.0, 0.0, 0.0), hand: HandPose | None = None,
               key=None) -> np.ndarray:
        """uint8 [H, W] camera frame. `key` identifies the ink state: the same key reuses the warp."""
        if key is None or (key, pose) != self._reflect_key:
            img = self.illumination * self.reflectance(ink_coverage, pose)
            if self.p.blur_sigma > 0:
                img = cv2.GaussianBlur(img, (0, 0), self.p.blur_sigma)
            self._reflect, self._reflect_key = img, (None if key is None else (key, pose))
        # Blurring before the shadow is exact enough: the shadow is far smoother than the optics' blur.
        img = self._reflect * self.shadow(hand) if hand is not None else self._reflect.copy()
        if self.p.noise_sigma > 0:
            img += self._noise()
        np.clip(img, 0, 255, out=img)
        return img.astype(np.uint8)

    def _noise(self) -> np.ndarray:
        """Sensor noise from a bank of pre-drawn fields at random offsets (drawing fresh Gaussian
        noise every frame cost more than the rest of the rendering)."""
        h, w = self.p.height, self.p.width
        if self._bank is None:
            self._bank = self.noise_rng.normal(0, self.p.noise_sigma, (6, h + 32, w + 32)).astype(np.float32)
        k, dy, dx = self.noise_rng.integers(0, (6, 32, 32))
        return self._bank[k, dy:dy + h, dx:dx + w]

    def paper_px(self) -> float:
        """Mean paper side in camera px (hand and pen sizes scale with it)."""
        c = self.base_corners
        return float(np.linalg.norm(c - np.roll(c, -1, axis=0), axis=1).mean())


# ----------------------------------------------------------------------------------------------
# the script


@dataclass
class _Segment:
    t0: float
    t1: float
    kind: str                           # idle | draw | travel | enter | leave | hold | pass | swap
    stroke: int = -1                    # draw: which stroke
    a: tuple = (0.0, 0.0)               # pen from (paper units) ...
    b: tuple = (0.0, 0.0)               # ... to


class SyntheticTable(FrameSource):
    """The scripted table as a frame source (paced like a camera when `realtime`)."""

    name = "synthetic"

    def __init__(self, params: SyntheticParams | None = None, drawings: list[Drawing] | None = None):
        super().__init__()
        self.p = params or SyntheticParams()
        self.renderer = TableRenderer(self.p)
        self._drawings = drawings
        self._cycle = -1
        self._segments: list[_Segment] = []
        self._t_cycle_end = 0.0
        self._t0: float | None = None
        self._pacer = Pacer(self.p.fps)
        self.pose = (0.0, 0.0, 0.0)
        self.drawing: Drawing = []
        self.hand: HandPose | None = None
        self._drawn: list[float] = []                 # pen-down length drawn per stroke
        self._cache_key = None
        self._coverage = np.zeros((self.p.canvas, self.p.canvas), np.uint8)
        self._open = False

    # -- FrameSource -----------------------------------------------------------------------------

    def open(self) -> None:
        if self._t0 is None:
            self._t0 = time.monotonic()
        self._open = True

    def close(self) -> None:
        self._open = False

    @property
    def expected_size(self):
        return self.p.width, self.p.height

    def scene_time(self) -> float:
        if self.p.realtime:
            return time.monotonic() - (self._t0 or time.monotonic())
        return self._seq / self.p.fps

    def read(self, timeout: float) -> Frame | None:
        if not self._open:
            raise SourceError("synthetic table is not open")
        if self.p.realtime and not self._pacer.wait(timeout):
            return None
        t_grab = time.monotonic()
        image = self.render_at(self.scene_time())
        return self._frame(image, t_grab)

    # -- scene -----------------------------------------------------------------------------------

    def paper_corners(self) -> np.ndarray:
        """Corners of the paper at rest (TL, TR, BR, BL, camera px): what a calibration would measure."""
        return self.renderer.corners()

    def true_ink(self, size: int) -> np.ndarray:
        """Bool mask of the ink on the sheet now, in paper coordinates (ground truth for tests)."""
        drawn = [_partial(s, L) for s, L in zip(self.drawing, self._drawn) if L > 0]
        return rasterize(drawn, size, self.p.pen_width)

    def render_at(self, t: float) -> np.ndarray:
        self._advance(t)
        coverage = self._ink_coverage()
        return self.renderer.render(coverage, self.pose, self.hand, key=self._cache_key)

    def _ink_coverage(self) -> np.ndarray:
        key = (self._cycle, tuple(round(L, 4) for L in self._drawn))
        if key != self._cache_key:
            self._coverage = np.zeros((self.p.canvas, self.p.canvas), np.uint8)
            drawn = [_partial(s, L) for s, L in zip(self.drawing, self._drawn) if L > 0]
            draw_polylines(self._coverage, drawn, self.p.pen_width * self.p.canvas, antialias=True)
            self._cache_key = key
        return self._coverage

    def _new_cycle(self, t_start: float) -> None:
        """Plan one cycle: idle, enter, strokes (pen up travel between), leave, hold, swap."""
        self._cycle += 1
        rng = np.random.default_rng((self.p.seed, self._cycle))
        if self._drawings:
            self.drawing = self._drawings[self._cycle % len(self._drawings)]
        else:
            self.drawing = doodle(rng)
        self._drawn = [0.0] * len(self.drawing)
        p, segs, t = self.p, [], t_start
        segs.append(_Segment(t, t + p.idle_s, "idle"))
        t += p.idle_s
        pos = (1.15, 0.9)                            # the hand comes in from the visitor's side
        for i, s in enumerate(self.drawing):
            start = tuple(s[0])
            dur = math.dist(pos, start) / p.travel_speed + 0.08
            segs.append(_Segment(t, t + dur, "travel" if i else "enter", -1, pos, start))
            t += dur
            dur = max(stroke_length(s) / p.pen_speed, 0.05)
            segs.append(_Segment(t, t + dur, "draw", i, start, tuple(s[-1])))
            t += dur
            pos = tuple(s[-1])
        segs.append(_Segment(t, t + 0.5, "leave", -1, pos, (1.2, 1.1)))
        t += 0.5
        hold_end = t + p.hold_s
        segs.append(_Segment(t, hold_end, "hold"))
        if rng.random() < p.pass_prob:
            tp = t + rng.uniform(0.2, 0.5) * p.hold_s
            y0, y1 = rng.uniform(0.2, 0.8, 2)
            segs.append(_Segment(tp, tp + 1.2, "pass", -1, (-0.3, y0), (1.3, y1)))
        if rng.random() < p.shift_prob:
            ts = t + rng.uniform(0.55, 0.75) * p.hold_s
            d = rng.normal(0, 1, 2)
            d = d / np.linalg.norm(d) * p.shift_px
            segs.append(_Segment(ts, ts + 0.25, "shift", -1, (0.0, 0.0), (float(d[0]), float(d[1]))))
        segs.append(_Segment(hold_end, hold_end + 1.0, "swap", -1, (1.2, 0.2), (0.5, 0.5)))
        self._segments = segs
        self._t_cycle_end = hold_end + 1.0

    def _advance(self, t: float) -> None:
        while self._cycle < 0 or t >= self._t_cycle_end:
            self._new_cycle(max(self._t_cycle_end, 0.0) if self._cycle >= 0 else 0.0)
            self.pose = (0.0, 0.0, 0.0)
        self.hand = None
        for seg in self._segments:
            if seg.kind == "draw":
                L = stroke_length(self.drawing[seg.stroke])
                f = np.clip((t - seg.t0) / (seg.t1 - seg.t0), 0.0, 1.0) if t >= seg.t0 else 0.0
                self._drawn[seg.stroke] = L * f if f < 1 else L + 1.0
            if not seg.t0 <= t < seg.t1:
                continue
            f = (t - seg.t0) / (seg.t1 - seg.t0)
            if seg.kind == "draw":
                tip = _partial(self.drawing[seg.stroke], self._drawn[seg.stroke])[-1]
                self.hand = self._hand_at(tuple(tip))
            elif seg.kind in ("enter", "travel", "leave", "pass"):
                tip = tuple(np.add(seg.a, f * np.subtract(seg.b, seg.a)))
                self.hand = self._hand_at(tip)
            elif seg.kind == "shift":
                self.pose = (seg.b[0] * f, seg.b[1] * f, 0.0)
            elif seg.kind == "swap":
                # Hands lift the old sheet and lay a new one: halfway through, the ink is gone.
                self.hand = self._hand_at((0.5 + 0.3 * math.cos(3 * f), 0.5 + 0.2 * math.sin(3 * f)))
                if f > 0.5:
                    self._drawn = [0.0] * len(self.drawing)
                    self.pose = (0.0, 0.0, 0.0)
        for seg in self._segments:
            if seg.kind == "shift" and t >= seg.t1 and self._drawn and max(self._drawn) > 0:
                self.pose = (seg.b[0], seg.b[1], 0.0)

    def _hand_at(self, tip_paper: tuple[float, float]) -> HandPose:
        """The hand sits down-right of the pen tip (a right-handed visitor facing the camera's top)."""
        h = cv2.perspectiveTransform(np.float64([[tip_paper]]) * self.p.canvas,
                                     self.renderer.paper_to_cam(self.pose).astype(np.float64))[0, 0]
        side = self.renderer.paper_px()
        hand = (h[0] + 0.13 * side, h[1] + 0.17 * side)
        return HandPose((float(h[0]), float(h[1])), (float(hand[0]), float(hand[1])), 0.1 * side)
