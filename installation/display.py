"""The projector: pygame window (or a headless framebuffer), projection warp, look, screens, overlay.

Per presented frame: the blended image (float, generator resolution) gets the look (contrast and
gamma through one 256-entry lookup table, saturation through a table on the HSV S channel), is warped
into projector space with the calibration (`paper_to_projector`), and is blitted. Frames that did not
change reuse the previous warp, which is the expensive part.

Headless (`--headless`, or no display server): SDL's dummy video driver, the same code path; the app
writes the projected frames to disk instead.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from typing import Callable

import cv2
import numpy as np
from loguru import logger

os.environ.setdefault("PYGAME_HIDE_SUPPORT_PROMPT", "1")
import pygame  # noqa: E402

MIN_PROJECT_SIDE = 256  # smaller generator outputs are upscaled (bicubic) to this side before the warp

KEYS = {
    pygame.K_TAB: "overlay", pygame.K_F1: "overlay", pygame.K_o: "overlay",
    pygame.K_b: "reference", pygame.K_s: "snapshot", pygame.K_c: "calibrate",
    pygame.K_q: "quit", pygame.K_ESCAPE: "quit",
}
KEY_HELP = "TAB overlay | B blank reference | S snapshot | C calibrate | Q quit"
OVERLAY_REFRESH_S = 0.25     # the overlay's pictures and numbers are redrawn 4 times a second


@dataclass
class DisplayParams:
    fps: float = 30.0
    size: tuple[int, int] | None = None      # framebuffer (width, height); None = the hardware profile's
    fullscreen: bool | None = None           # None = the hardware profile's
    contrast: float = 1.0
    saturation: float = 1.0
    gamma: float = 1.0
    overlay: bool = False                    # operator overlay visible at start
    thumb: int = 150                         # overlay thumbnail side, px

    def __post_init__(self):
        if self.fps <= 0 or self.contrast <= 0 or self.saturation < 0 or self.gamma <= 0:
            raise ValueError("display: fps, contrast, gamma > 0 and saturation >= 0 required")
        if self.size is not None and min(self.size) <= 0:
            raise ValueError(f"display size must be positive, got {self.size}")


def tone_lut(contrast: float, gamma: float) -> np.ndarray:
    """uint8 LUT: gamma, then contrast about mid-grey."""
    v = np.linspace(0, 1, 256) ** gamma
    return np.clip(((v - 0.5) * contrast + 0.5) * 255 + 0.5, 0, 255).astype(np.uint8)


def saturation_lut(saturation: float) -> np.ndarray:
    return np.clip(np.arange(256) * saturation + 0.5, 0, 255).astype(np.uint8)


def apply_look(rgb: np.ndarray, tone: np.ndarray, sat: np.ndarray | None) -> np.ndarray:
    out = cv2.LUT(rgb, tone)
    if sat is not None:
        hsv = cv2.cvtColor(out, cv2.COLOR_RGB2HSV)
        hsv[..., 1] = cv2.LUT(hsv[..., 1], sat)
        out = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)
    return out


def display_available() -> bool:
    """A display server to open a window on (Linux: X11 or Wayland)."""
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")) or os.name == "nt"


def to_u8_rgb(image: np.ndarray) -> np.ndarray:
    """Float [0, 1] or uint8, grey or RGB -> contiguous uint8 RGB."""
    if image.dtype != np.uint8:
        image = np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    return np.ascontiguousarray(image)


class Display:
    def __init__(self, params: DisplayParams, profile, headless: bool):
        self.p = params
        self.headless = headless or not display_available()
        if self.headless:
            os.environ["SDL_VIDEODRIVER"] = "dummy"
            if not headless:
                logger.warning("no display server found (DISPLAY/WAYLAND_DISPLAY unset): running headless")
        pygame.display.init()
        pygame.font.init()
        self.size = tuple(params.size or (profile.width, profile.height))
        fullscreen = profile.fullscreen if params.fullscreen is None else params.fullscreen
        index = profile.index
        if profile.name:
            logger.warning(f"display name {profile.name!r}: pygame cannot list display names, using "
                           f"index {index}")
        if index >= pygame.display.get_num_displays():
            logger.warning(f"display index {index} does not exist "
                           f"({pygame.display.get_num_displays()} display(s)); using display 0")
            index = 0
        flags = pygame.FULLSCREEN if fullscreen and not self.headless else 0
        self.screen = pygame.display.set_mode(self.size, flags, display=index)
        pygame.display.set_caption("New Snow")
        if flags:
            pygame.mouse.set_visible(False)
        self.tone = tone_lut(params.contrast, params.gamma)
        self.sat = None if params.saturation == 1.0 else saturation_lut(params.saturation)
        self.font = pygame.font.Font(None, max(18, self.size[1] // 40))
        self.big_font = pygame.font.Font(None, max(28, self.size[1] // 14))
        self.overlay_on = params.overlay
        self._overlay: list | None = None
        self._overlay_t = 0.0
        self._cache_src = None
        self._cache_out = None
        logger.info(f"display {self.size[0]}x{self.size[1]} on index {index}, "
                    f"{'headless (SDL dummy)' if self.headless else 'fullscreen' if flags else 'window'}")

    def set_calibration(self, calibration) -> None:
        """Where the paper lies in the framebuffer; rescaled if the framebuffer is not the size the
        calibration was made for."""
        pw, ph = calibration.projector_size
        if (pw, ph) != self.size:
            logger.warning(f"calibration is for a {pw}x{ph} projector, the framebuffer is "
                           f"{self.size[0]}x{self.size[1]}: scaling")
        self._scale = np.diag([self.size[0] / pw, self.size[1] / ph, 1.0])
        self.calibration = calibration
        self._maps = {}
        self._cache_src = None

    def _maps_for(self, side: int):
        """Fixed-point remap grids over the paper's bounding box only (the per-frame cost is the
        paper's pixels, not the whole framebuffer's), for a square image of `side`."""
        if side in self._maps:
            return self._maps[side]
        h = self._scale @ self.calibration.paper_to_projector(side)
        corners = cv2.perspectiveTransform(np.float64([[[0, 0], [side, 0], [side, side], [0, side]]]), h)[0]
        x0, y0 = np.maximum(np.floor(corners.min(0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(corners.max(0)).astype(int) + 1, self.size)
        if x1 <= x0 or y1 <= y0:
            raise ValueError("the calibrated paper lies outside the projector image")
        yy, xx = np.mgrid[y0:y1, x0:x1].astype(np.float64)
        src = cv2.perspectiveTransform(np.dstack([xx, yy]).reshape(1, -1, 2), np.linalg.inv(h))[0]
        mx = src[:, 0].reshape(xx.shape).astype(np.float32)
        my = src[:, 1].reshape(xx.shape).astype(np.float32)
        self._maps[side] = ((x0, y0, x1, y1), cv2.convertMaps(mx, my, cv2.CV_16SC2))
        return self._maps[side]

    def project(self, image: np.ndarray) -> np.ndarray:
        """Blended image -> uint8 RGB [height, width, 3] projector frame (cached per input array)."""
        if image is self._cache_src:
            return self._cache_out
        rgb = apply_look(to_u8_rgb(image), self.tone, self.sat)
        if rgb.shape[0] < MIN_PROJECT_SIDE:        # bicubic first: bilinear alone shows the pixel grid
            rgb = cv2.resize(rgb, (MIN_PROJECT_SIDE, MIN_PROJECT_SIDE), interpolation=cv2.INTER_CUBIC)
        (x0, y0, x1, y1), (m1, m2) = self._maps_for(rgb.shape[0])
        out = np.zeros((self.size[1], self.size[0], 3), np.uint8)   # new: the PNG writer may hold the last
        cv2.remap(rgb, m1, m2, cv2.INTER_LINEAR, dst=out[y0:y1, x0:x1], borderMode=cv2.BORDER_CONSTANT,
                  borderValue=(0, 0, 0))
        self._cache_src, self._cache_out = image, out
        return out

    # -- drawing ---------------------------------------------------------------------------------

    def _blit_array(self, rgb: np.ndarray) -> None:
        self.screen.blit(pygame.image.frombuffer(rgb.tobytes(), (rgb.shape[1], rgb.shape[0]), "RGB"), (0, 0))

    def _text(self, font, text: str, pos, color=(255, 255, 255), center=False) -> None:
        surf = font.render(text, True, color)
        rect = surf.get_rect(center=pos) if center else surf.get_rect(topleft=pos)
        self.screen.blit(surf, rect)

    def present(self, frame: np.ndarray, message: tuple[str, str] | None = None,
                overlay: Callable[[], tuple[list, list[str]]] | None = None) -> float:
        """Show one frame, with a status screen or the operator overlay on top; returns the
        presentation time. `overlay` returns (thumbnails [(label, image)], text lines); it is called
        only while the overlay is visible, and at most OVERLAY_REFRESH_S apart."""
        if message is not None:
            frame = frame // 4                                   # keep the drawing faintly visible
        self._blit_array(frame)
        if message is not None:
            w, h = self.size
            self._text(self.big_font, message[0], (w // 2, h // 2 - h // 20), (255, 220, 120), center=True)
            self._text(self.font, message[1], (w // 2, h // 2 + h // 20), center=True)
        if self.overlay_on and overlay is not None:
            now = time.monotonic()
            if self._overlay is None or now - self._overlay_t >= OVERLAY_REFRESH_S:
                self._overlay, self._overlay_t = self._render_overlay(*overlay()), now
            for surf, pos in self._overlay:
                self.screen.blit(surf, pos)
        pygame.display.flip()
        return time.monotonic()

    def _render_overlay(self, thumbs, lines) -> list:
        """Thumbnails of the pipeline stages in a row, the status lines below: [(surface, position)]."""
        t, pad = self.p.thumb, 6
        out, x = [], pad
        for label, img in thumbs:
            if img is None:
                continue
            rgb = to_u8_rgb(img)
            rgb = cv2.resize(rgb, (t, int(round(t * rgb.shape[0] / rgb.shape[1]))), interpolation=cv2.INTER_AREA)
            out.append((pygame.image.frombuffer(rgb.tobytes(), (rgb.shape[1], rgb.shape[0]), "RGB"), (x, pad)))
            out.append((self.font.render(label, True, (255, 255, 0)), (x + 3, pad + rgb.shape[0] + 2)))
            x += t + pad
        y = pad + t + self.font.get_linesize() + 2 * pad
        texts = [self.font.render(line, True, (255, 255, 255)) for line in lines + [KEY_HELP]]
        box = pygame.Surface((max(s.get_width() for s in texts) + 2 * pad, self.font.get_linesize() * len(texts) + pad))
        box.set_alpha(170)
        box.fill((0, 0, 0))
        out.append((box, (pad, y - pad // 2)))
        out += [(surf, (2 * pad, y + i * self.font.get_linesize())) for i, surf in enumerate(texts)]
        return out

    def poll(self) -> list[str]:
        """Pending operator actions: overlay, reference, snapshot, calibrate, quit."""
        actions = []
        for ev in pygame.event.get():
            if ev.type == pygame.QUIT:
                actions.append("quit")
            elif ev.type == pygame.KEYDOWN and ev.key in KEYS:
                actions.append(KEYS[ev.key])
        if "overlay" in actions:
            self.overlay_on = not self.overlay_on
        return actions

    def close(self) -> None:
        pygame.display.quit()
