"""The live table: a pygame window on the projector and a V4L2 camera, behind the Projector and
Camera interfaces of calibration/scene.py.

The camera reader here is deliberately small (cv2.VideoCapture, profile applied, frames as
gray uint8); any object with `.read() -> gray uint8` (the runtime's frame sources) plugs in.
"""
from __future__ import annotations

import ctypes
import glob
import os

import cv2
import numpy as np
from loguru import logger

from calibration.errors import CalibrationError
from calibration.scene import Scene
from hardware.profiles import CameraProfile, DisplayProfile

WHITE, YELLOW, CYAN, GREEN = (255, 255, 255), (255, 220, 0), (0, 220, 255), (60, 220, 60)


class CameraReader:
    """cv2.VideoCapture on the profile's device, size, fps and format; gray frames."""

    def __init__(self, profile: CameraProfile):
        dev = int(profile.device) if profile.device.isdigit() else profile.device
        self.cap = cv2.VideoCapture(dev, cv2.CAP_V4L2)
        if not self.cap.isOpened():
            raise CalibrationError(f"camera {profile.device!r} could not be opened: is it plugged in, and is the "
                                   "table runtime (which holds the camera) stopped?")
        self.cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*profile.fourcc))
        self.cap.set(cv2.CAP_PROP_FRAME_WIDTH, profile.width)
        self.cap.set(cv2.CAP_PROP_FRAME_HEIGHT, profile.height)
        self.cap.set(cv2.CAP_PROP_FPS, profile.fps)
        self.cap.set(cv2.CAP_PROP_BUFFERSIZE, profile.buffer_size)
        got = (int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
        if got != (profile.width, profile.height):
            logger.warning(f"camera delivers {got[0]}x{got[1]}, profile asks {profile.width}x{profile.height}")

    def read(self) -> np.ndarray:
        ok, frame = self.cap.read()
        if not ok or frame is None:
            raise CalibrationError("the camera stopped delivering frames; check the cable and restart")
        return frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)

    def close(self) -> None:
        self.cap.release()


def _display_names() -> list[str]:
    """Display names from the SDL library pygame bundles (pygame itself does not expose them)."""
    import pygame

    libs = glob.glob(os.path.join(os.path.dirname(pygame.__file__) + ".libs", "libSDL2-2*"))
    if not libs:
        raise CalibrationError("display.name is set but SDL display names are unavailable; use display.index")
    get = ctypes.CDLL(libs[0]).SDL_GetDisplayName
    get.restype, get.argtypes = ctypes.c_char_p, [ctypes.c_int]
    return [(get(i) or b"").decode(errors="replace") for i in range(pygame.display.get_num_displays())]


class ProjectorWindow:
    """Full-screen pygame window on the projector's display; draws Scenes, reports key names."""

    def __init__(self, profile: DisplayProfile):
        import pygame

        self.pg = pygame
        pygame.display.init()
        pygame.font.init()
        index = profile.index
        if profile.name:
            names = _display_names()
            hits = [i for i, n in enumerate(names) if profile.name.lower() in n.lower()]
            if not hits:
                raise CalibrationError(f"no display named like {profile.name!r}; connected: {names}")
            index = hits[0]
        if index >= pygame.display.get_num_displays():
            raise CalibrationError(f"display index {index} does not exist "
                                   f"({pygame.display.get_num_displays()} connected)")
        self.size = (profile.width, profile.height)
        flags = pygame.FULLSCREEN if profile.fullscreen else 0
        self.screen = pygame.display.set_mode(self.size, flags, display=index)
        pygame.display.set_caption("New Snow calibration")
        pygame.mouse.set_visible(False)
        self.font = pygame.font.Font(None, 30)

    def show(self, scene: Scene) -> None:
        pg, s = self.pg, self.screen
        s.fill((0, 0, 0))
        if scene.image is not None:
            assert scene.image.shape == self.size[::-1], f"pattern {scene.image.shape} != display {self.size[::-1]}"
            s.blit(pg.surfarray.make_surface(np.repeat(scene.image.T[:, :, None], 3, axis=2)), (0, 0))
        for i, (x, y) in enumerate(scene.crosshairs):
            if scene.target is not None and i != scene.target:
                continue                                   # one crosshair at a time: no wrong dots
            self._crosshair(x, y, 40)
        for x, y, r in scene.rings:
            pg.draw.circle(s, GREEN, (round(x), round(y)), round(r), 2)
        if scene.outline is not None:
            pts = [tuple(p) for p in np.round(scene.outline).astype(int)]
            pg.draw.lines(s, WHITE, True, pts, 1)
            for i, p in enumerate(pts):
                if scene.selected_corner in (None, i):
                    pg.draw.circle(s, YELLOW, p, 12, 1)
        for x, y, w, h, label in scene.boxes:
            pg.draw.rect(s, WHITE, (round(x), round(y), round(w), round(h)), 2)
            s.blit(self.font.render(label, True, CYAN), (round(x) + 6, round(y + h) + 6))
        for k, line in enumerate(scene.lines):
            s.blit(self.font.render(line, True, YELLOW), (30, 30 + 34 * k))
        pg.display.flip()

    def _crosshair(self, x: float, y: float, r: int) -> None:
        pg, s = self.pg, self.screen
        xi, yi = round(x), round(y)
        pg.draw.line(s, WHITE, (xi - r, yi), (xi + r, yi), 1)
        pg.draw.line(s, WHITE, (xi, yi - r), (xi, yi + r), 1)
        pg.draw.circle(s, WHITE, (xi, yi), r // 2, 1)

    def keys(self) -> list[str]:
        pg = self.pg
        out = []
        for ev in pg.event.get():
            if ev.type == pg.QUIT:
                out.append("escape")
            elif ev.type == pg.KEYDOWN:
                name = pg.key.name(ev.key)
                out.append(("shift+" if ev.mod & pg.KMOD_SHIFT else "") + name)
        return out

    def close(self) -> None:
        self.pg.display.quit()
