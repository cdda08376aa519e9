"""A simulated table: ground-truth geometry, an IR camera with a real lens, and a technician.

Nothing here is shared with the estimator: the truth uses the Brown lens model (k1, k2) while the
fit uses the division model, the camera frames are rendered from table millimetres exactly
(anti-aliased discs and strokes, illumination gradient, vignetting, blur, sensor noise), and the
detector sees only those uint8 frames, as on the real table. The error against the truth is then
measured over the whole sheet, not at the calibration points.

Frames of reference: table millimetres (paper at [0, W] x [0, H]), projector pixels, ideal camera
pixels (pinhole) and raw camera pixels (after the lens).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np

from calibration.geometry import apply_homography, as_points
from calibration.scene import Scene


@dataclass
class SimParams:
    camera_size: tuple[int, int] = (1280, 720)
    projector_size: tuple[int, int] = (1920, 1080)
    paper_mm: tuple[float, float] = (420.0, 297.0)
    k1_range: tuple[float, float] = (-0.18, -0.06)       # barrel, typical of M12 board-camera lenses
    k2_range: tuple[float, float] = (-0.02, 0.04)
    noise_dn: float = 1.5                                  # sensor noise, DN (plus a shot-noise term)
    psf_sigma: float = 0.6                                 # lens + demosaic blur, camera px
    dot_radius_mm: tuple[float, float] = (0.6, 1.1)        # carbon pen dots, 1.2-2.2 mm across
    dot_darkness: tuple[float, float] = (0.35, 0.85)       # 1 - IR reflectance of the ink
    mark_jitter_mm: float = 0.15                           # how far from the crosshair the dot lands


def _quad_homography(src, dst) -> np.ndarray:
    return cv2.getPerspectiveTransform(np.float32(src), np.float32(dst)).astype(np.float64)


class TableTruth:
    """The ground-truth geometry of one table, drawn from `rng`."""

    def __init__(self, rng: np.random.Generator, p: SimParams):
        self.p = p
        w, h = p.paper_mm
        paper = np.array([[0, 0], [w, 0], [w, h], [0, h]], float)
        pw, ph = p.projector_size
        cw, ch = p.camera_size
        # projector under the glass: the sheet fills ~72 % of the width, slight keystone and roll
        self.mm_to_proj = _quad_homography(paper, self._place(
            rng, paper, center=(pw / 2, ph / 2), width=1380, keystone=0.0, angle_deg=1.0, jitter=10))
        # camera beside it, looking up at an angle through the glass: mirrored, keystoned
        cam = self._place(rng, paper, center=(cw / 2, ch / 2), width=840,
                          keystone=rng.uniform(0.03, 0.10), angle_deg=2.0, jitter=8)
        self.mm_to_ideal = _quad_homography(paper, cam[[1, 0, 3, 2]])
        self.f = rng.uniform(960, 1040)
        self.c = np.array([cw / 2, ch / 2]) + rng.uniform(-12, 12, 2)
        self.k1 = rng.uniform(*p.k1_range)
        self.k2 = rng.uniform(*p.k2_range)

    @staticmethod
    def _place(rng, paper, center, width, keystone, angle_deg, jitter) -> np.ndarray:
        w, h = paper[2]
        s = width / w
        q = (paper - paper[2] / 2) * s
        q[:2, 0] *= 1 - keystone                              # far edge looks shorter
        q[2:, 0] *= 1 + keystone
        a = np.deg2rad(rng.uniform(-angle_deg, angle_deg))
        r = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        return q @ r.T + np.asarray(center) + rng.uniform(-20, 20, 2) + rng.uniform(-jitter, jitter, (4, 2))

    def ideal_to_raw(self, pts) -> np.ndarray:
        n = (as_points(pts) - self.c) / self.f
        r2 = (n ** 2).sum(1, keepdims=True)
        return self.c + self.f * n * (1 + self.k1 * r2 + self.k2 * r2 ** 2)

    def raw_to_ideal(self, pts) -> np.ndarray:
        d = (as_points(pts) - self.c) / self.f
        u = d.copy()
        for _ in range(40):                                   # fixed point; converges for |k1| r^2 << 1
            r2 = (u ** 2).sum(1, keepdims=True)
            u = d / (1 + self.k1 * r2 + self.k2 * r2 ** 2)
        return self.c + self.f * u

    def mm_to_raw(self, mm) -> np.ndarray:
        return self.ideal_to_raw(apply_homography(self.mm_to_ideal, mm))

    def raw_to_mm(self, raw) -> np.ndarray:
        return apply_homography(np.linalg.inv(self.mm_to_ideal), self.raw_to_ideal(raw))

    def proj_to_mm(self, proj) -> np.ndarray:
        return apply_homography(np.linalg.inv(self.mm_to_proj), proj)

    def raw_to_proj(self, raw) -> np.ndarray:
        return apply_homography(self.mm_to_proj, self.raw_to_mm(raw))

    def paper_grid_mm(self, n: tuple[int, int] = (41, 29), inset_mm: float = 5.0) -> np.ndarray:
        w, h = self.p.paper_mm
        xs = np.linspace(inset_mm, w - inset_mm, n[0])
        ys = np.linspace(inset_mm, h - inset_mm, n[1])
        return np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)

    def error_of(self, cam_to_projector) -> np.ndarray:
        """Distance (projector px) between a calibrated camera -> projector map and the truth, over the sheet."""
        mm = self.paper_grid_mm()
        est = cam_to_projector(self.mm_to_raw(mm))
        return np.linalg.norm(est - apply_homography(self.mm_to_proj, mm), axis=1)

    def projector_roi(self) -> tuple[int, int, int, int]:
        """What a technician would write into the profile: the projector rectangle inside the sheet."""
        w, h = self.p.paper_mm
        c = apply_homography(self.mm_to_proj, [[0, 0], [w, 0], [w, h], [0, h]])
        x0, x1 = max(c[0, 0], c[3, 0]), min(c[1, 0], c[2, 0])
        y0, y1 = max(c[0, 1], c[1, 1]), min(c[2, 1], c[3, 1])
        return int(np.ceil(x0)), int(np.ceil(y0)), int(x1 - x0) - 1, int(y1 - y0) - 1


class SimulatedTable:
    """Renders IR camera frames of the table; `read()` is the Camera interface."""

    def __init__(self, seed: int = 0, params: SimParams | None = None, technician: Technician | None = None):
        self.p = params or SimParams()
        self.rng = np.random.default_rng(seed)
        self.truth = TableTruth(self.rng, self.p)
        cw, ch = self.p.camera_size
        self.X, self.Y = self._mm_maps(cw, ch)
        gxx, gxy = np.gradient(self.X, axis=1), np.gradient(self.X, axis=0)
        gyx, gyy = np.gradient(self.Y, axis=1), np.gradient(self.Y, axis=0)
        self.pix_mm = np.sqrt(np.abs(gxx * gyy - gxy * gyx)).astype(np.float32)   # pixel footprint, mm
        w, h = self.p.paper_mm
        sd = np.minimum(np.minimum(self.X, w - self.X), np.minimum(self.Y, h - self.Y))
        self.paper_alpha = np.clip(sd / self.pix_mm + 0.5, 0, 1)
        ys, xs = np.mgrid[0:ch, 0:cw].astype(np.float32)
        r2 = ((xs - cw / 2) ** 2 + (ys - ch / 2) ** 2) / ((cw / 2) ** 2 + (ch / 2) ** 2)
        g = self.rng.uniform(-0.15, 0.15, 2)
        self.illum = (self.rng.uniform(190, 220) * (1 - 0.3 * r2)
                      * (1 + g[0] * (xs / cw - 0.5) + g[1] * (ys / ch - 0.5))).astype(np.float32)
        self.ink = np.ones((ch, cw), np.float32)          # reflectance multiplier of pen and toner
        self.shadow = np.ones((ch, cw), np.float32)       # the technician's hand
        self._hand_win = None
        self.projector_image: np.ndarray | None = None
        self.filter_off = False                           # True: the camera sees the projector's light
        self.ink_marks_mm: list[np.ndarray] = []          # where ink went, for the tests' bookkeeping
        self.technician = technician
        self.frames = 0
        self._proj_maps: tuple[np.ndarray, np.ndarray] | None = None
        # one bank of sensor noise, read at a random offset per frame: drawing 1M normals per frame
        # would dominate the simulation's run time
        self._noise = self.rng.standard_normal((ch + 64, cw + 64), dtype=np.float32)
        self._sigma: np.ndarray | None = None
        self._lit: np.ndarray | None = None

    def _mm_maps(self, cw: int, ch: int, step: int = 4) -> tuple[np.ndarray, np.ndarray]:
        """Table mm under every raw camera pixel: exact on a coarse grid, bilinear in between
        (the map is smooth, so the error stays below 0.001 mm; cv2.remap would quantise the
        positions to 1/32 px, scipy does not)."""
        from scipy.ndimage import map_coordinates

        gy, gx = np.mgrid[0:ch + 2 * step:step, 0:cw + 2 * step:step].astype(np.float64)
        mm = self.truth.raw_to_mm(np.c_[gx.ravel(), gy.ravel()])
        ys, xs = np.mgrid[0:ch, 0:cw].astype(np.float64) / step
        return tuple(map_coordinates(mm[:, i].reshape(gx.shape), [ys, xs], order=1).astype(np.float32)
                     for i in range(2))

    # -- ink ---------------------------------------------------------------------------------------
    def _window(self, mm_pts, pad_mm: float):
        raw = self.truth.mm_to_raw(mm_pts)
        pad = pad_mm / float(self.pix_mm.min()) + 3
        cw, ch = self.p.camera_size
        x0, y0 = np.floor(raw.min(0) - pad).astype(int)
        x1, y1 = np.ceil(raw.max(0) + pad).astype(int)
        return slice(max(y0, 0), min(y1, ch)), slice(max(x0, 0), min(x1, cw))

    def _paint(self, win, dist_mm, radius_mm, darkness):
        alpha = np.clip((radius_mm - dist_mm) / self.pix_mm[win] + 0.5, 0, 1)
        self.ink[win] *= 1 - darkness * alpha
        self._lit = None

    def add_dot(self, center_mm, radius_mm: float, darkness: float) -> None:
        c = as_points(center_mm)[0]
        win = self._window(c, radius_mm)
        self._paint(win, np.hypot(self.X[win] - c[0], self.Y[win] - c[1]), radius_mm, darkness)
        self.ink_marks_mm.append(c)

    def add_stroke(self, poly_mm, width_mm: float = 0.8, darkness: float = 0.8) -> None:
        p = as_points(poly_mm)
        win = self._window(p, width_mm)
        x, y = self.X[win], self.Y[win]
        dist = np.full(x.shape, np.inf, np.float32)
        for a, b in zip(p[:-1], p[1:]):
            ab = b - a
            t = np.clip(((x - a[0]) * ab[0] + (y - a[1]) * ab[1]) / max(ab @ ab, 1e-12), 0, 1)
            dist = np.minimum(dist, np.hypot(x - a[0] - t * ab[0], y - a[1] - t * ab[1]))
        self._paint(win, dist, width_mm / 2, darkness)

    def add_print(self, image: np.ndarray, origin_mm, mm_per_px: float, toner: float = 0.9) -> None:
        """Lay a printed sheet (uint8, 255 = paper) with its top-left pixel corner at `origin_mm`."""
        blur = 0.5 * float(self.pix_mm.mean()) / mm_per_px      # pre-filter to the camera's footprint
        img = cv2.GaussianBlur(image.astype(np.float32) / 255, (0, 0), max(blur, 0.3))
        mx = (self.X - origin_mm[0]) / mm_per_px - 0.5
        my = (self.Y - origin_mm[1]) / mm_per_px - 0.5
        s = cv2.remap(img, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=1.0)
        self.ink *= 1 - toner * (1 - s)
        self._lit = None

    def clear_ink(self) -> None:
        """A fresh blank sheet in the same place."""
        self.ink[:] = 1
        self._lit = None

    def set_hand(self, center_mm=None, radii_mm=(70.0, 45.0)) -> None:
        """The hand's shadow: an ellipse on the table, or none."""
        if self._hand_win is not None:
            self.shadow[self._hand_win] = 1
            self._hand_win = None
        if center_mm is None:
            return
        c, r = np.asarray(center_mm, float), np.asarray(radii_mm, float)
        win = self._window(np.array([c - 1.1 * r, c + 1.1 * r, c + [1.1, -1.1] * r, c - [1.1, -1.1] * r]), 0)
        d = np.hypot((self.X[win] - c[0]) / r[0], (self.Y[win] - c[1]) / r[1])
        self.shadow[win] = 1 - 0.6 * np.clip((1.05 - d) / 0.1, 0, 1)
        self._hand_win = win

    # -- camera ------------------------------------------------------------------------------------
    def _projector_light(self) -> np.ndarray:
        if self._proj_maps is None:
            pts = apply_homography(self.truth.mm_to_proj, np.c_[self.X.ravel(), self.Y.ravel()])
            shape = self.X.shape
            self._proj_maps = (pts[:, 0].reshape(shape).astype(np.float32) - 0.5,
                               pts[:, 1].reshape(shape).astype(np.float32) - 0.5)
        # a camera pixel spans ~1.6 projector pixels: average the pattern over that footprint
        # (a symmetric kernel: an even-sized box would shift the image by half a pixel)
        img = cv2.GaussianBlur(self.projector_image.astype(np.float32), (0, 0), 0.7)
        return cv2.remap(img, *self._proj_maps, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)

    def render(self) -> np.ndarray:
        if self._lit is None:                          # IR light off paper and ink; changes only with the ink
            self._lit = self.illum * (0.3 + 0.65 * self.paper_alpha) * self.ink
        img = self._lit
        if self.filter_off and self.projector_image is not None:
            img = 0.35 * img + 0.8 * self._projector_light() * (0.2 + 0.8 * self.paper_alpha) * self.ink
        if self._hand_win is not None:
            img = img * self.shadow
        img = cv2.GaussianBlur(img, (0, 0), self.p.psf_sigma)
        if self._sigma is None:                        # read noise + shot noise of the lit sheet
            self._sigma = np.sqrt(self.p.noise_dn ** 2 + 0.01 * img)
        oy, ox = self.rng.integers(0, 64, 2)
        img += self._sigma * self._noise[oy:oy + img.shape[0], ox:ox + img.shape[1]]
        return np.clip(img + 0.5, 0, 255).astype(np.uint8)

    def read(self) -> np.ndarray:
        self.frames += 1
        if self.technician is not None:
            self.technician.act(self)
        return self.render()


@dataclass
class Technician:
    """Marks crosshairs, aligns outlines, draws pen samples, with mistakes on request.

    miss: crosshair indices never marked; stray: indices where a second, stray mark appears;
    beside_mm: index -> (dx, dy) mm offset of a dot marked beside its crosshair (the redo is right);
    pens: IR darkness of the pens drawn into the pen-test boxes.
    """

    miss: set[int] = field(default_factory=set)
    stray: set[int] = field(default_factory=set)
    beside_mm: dict[int, tuple[float, float]] = field(default_factory=dict)
    pens: list[float] = field(default_factory=lambda: [0.8, 0.02, 0.3])
    hand_frames: int = 3                            # frames the hand covers the paper while marking
    eye_px: float = 0.3                             # how well the technician judges an outline corner
    outline_truth: np.ndarray | None = None         # projector px of the printed outline's corners
    scene: Scene | None = None
    _plan: list = field(default_factory=list)
    _handled: object = None
    _pending: list[str] = field(default_factory=list)      # keys to press at the next poll
    _presses: int = 0
    marked: dict[int, np.ndarray] = field(default_factory=dict)   # index -> mm where the dot went

    def observe(self, scene: Scene) -> None:
        self.scene = scene
        key = (scene.target, tuple(map(tuple, np.round(scene.crosshairs, 3))), scene.request)
        if scene.request is not None and key != self._handled:
            self._handled = key
            self._plan = [("request", scene.request)]
        elif scene.target is not None and key != self._handled:
            self._handled = key
            self._plan = self._mark_plan(scene.target, scene.crosshairs[scene.target])
        elif scene.boxes and key != self._handled:
            self._handled = key
            self._plan = [("pens", list(scene.boxes))] + [("idle",)] * 5 + [("press", "return")]

    def _mark_plan(self, index: int, target_px) -> list:
        return ([("idle",)] + [("hand", index, target_px, i) for i in range(self.hand_frames)]
                + [("mark", index, target_px)])

    def act(self, table: SimulatedTable) -> None:
        p = table.p
        if not self._plan:
            table.set_hand(None)
            return
        step = self._plan.pop(0)
        if step[0] == "idle":
            table.set_hand(None)
        elif step[0] == "hand":
            mm = table.truth.proj_to_mm(step[2])[0]
            table.set_hand(mm + np.array([60.0 - 15 * step[3], 50.0 - 12 * step[3]]))
        elif step[0] == "mark":
            table.set_hand(None)
            index = step[1]
            if index in self.miss:
                return
            mm = table.truth.proj_to_mm(step[2])[0] + table.rng.normal(0, p.mark_jitter_mm, 2)
            mm = mm + np.asarray(self.beside_mm.pop(index, (0.0, 0.0)))   # a mistake is made once
            table.add_dot(mm, table.rng.uniform(*p.dot_radius_mm), table.rng.uniform(*p.dot_darkness))
            self.marked[index] = mm
            if index in self.stray:
                table.add_dot(mm + np.array([35.0, -22.0]), 0.9, 0.7)
        elif step[0] == "request":
            if step[1] == "lay-paper":
                table.clear_ink()                      # the printed sheet off, the blank paper on
            elif step[1] in ("remove-filter", "restore-filter"):
                table.filter_off = step[1] == "remove-filter"
            self._pending.append("return")
        elif step[0] == "press":
            self._pending.append(step[1])
        elif step[0] == "pens":
            for (x, y, w, h, _), dark in zip(step[1], self.pens):
                a = table.truth.proj_to_mm([[x + 0.2 * w, y + 0.5 * h], [x + 0.8 * w, y + 0.5 * h]])
                table.add_stroke(a, 1.0, dark)

    def keys(self) -> list[str]:
        """Arrow keys that bring the selected outline corner onto the printed one, then Enter."""
        s = self.scene
        if self._pending:
            keys, self._pending = self._pending, []
            return keys
        if s is None or s.outline is None or s.selected_corner is None or self.outline_truth is None:
            return []
        self._presses += 1
        rng = np.random.default_rng(self._presses)
        i = s.selected_corner
        seen = self.outline_truth[i] + rng.normal(0, self.eye_px, 2)
        d = seen - np.asarray(s.outline[i])
        if np.abs(d).max() < 0.5:
            done = np.abs(self.outline_truth - np.asarray(s.outline)).max() < 1.5
            key = "return" if done and i == 3 else "tab"
        else:
            axis = int(np.argmax(np.abs(d)))
            name = ("right" if d[0] > 0 else "left") if axis == 0 else ("down" if d[1] > 0 else "up")
            key = ("shift+" if abs(d[axis]) >= 10 else "") + name
        return [key]


class SimulatedProjector:
    """The Projector interface for the simulated table: the technician watches what is shown."""

    def __init__(self, table: SimulatedTable):
        self.table = table
        self.size = table.p.projector_size
        self.shown: list[Scene] = []

    def show(self, scene: Scene) -> None:
        self.shown.append(scene)
        self.table.projector_image = scene.image
        if self.table.technician is not None:
            self.table.technician.observe(scene)

    def keys(self) -> list[str]:
        return self.table.technician.keys() if self.table.technician is not None else []


def lay_sheet(table: SimulatedTable, spec, offset_mm=(0.0, 0.0), px_per_mm: float = 8.0) -> np.ndarray:
    """Print `spec`'s ChArUco page onto the table, its top-left at `offset_mm` from the paper's;
    returns the true projector px of the printed outline's corners (what the technician aligns to)."""
    from calibration.fiducial import render_sheet

    table.add_print(render_sheet(spec, px_per_mm), origin_mm=offset_mm, mm_per_px=1.0 / px_per_mm)
    corners_mm = np.asarray(offset_mm) + np.asarray(spec.origin_mm) + spec.outline_mm()
    return apply_homography(table.truth.mm_to_proj, corners_mm)
