"""Frame sources behind one interface, and the latest-frame reader that watches them.

A source is a plain blocking reader: `open()`, `read(timeout) -> Frame | None` (None: nothing arrived
within the timeout, i.e. a stall), `close()`; it raises SourceError when the device is gone or cannot be
opened. Everything about liveness lives in one place, `LatestFrameReader`: a thread that keeps only the
newest frame (never a backlog), validates frames, counts what it drops, and reopens a stalled or
unplugged source with exponential backoff, forever, because a kiosk must come back by itself.

Sources: V4L2Camera, VideoFileSource (paced), ImageFolderSource (paced), SyntheticTable
(installation/synthetic.py) and FaultInjectingSource (stall / unplug / corrupt, for tests and drills).
"""
from __future__ import annotations

import os
import threading
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from loguru import logger

from installation.frames import Frame
from installation.metrics import Metrics

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")


class SourceError(RuntimeError):
    """The source cannot deliver: device missing, unplugged, unreadable file."""


def to_gray(image: np.ndarray) -> np.ndarray:
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
    if image.dtype == np.uint16:                         # Y16 IR cameras
        image = (image >> 8).astype(np.uint8)
    return image


class FrameSource(ABC):
    """One camera-like thing. Not thread-safe: exactly one reader thread calls it."""

    name = "source"

    def __init__(self):
        self._seq = 0           # survives reopen: a gap in seq is a frame nobody processed

    def _frame(self, image: np.ndarray, t_capture: float | None = None) -> Frame:
        self._seq += 1
        return Frame(image, time.monotonic() if t_capture is None else t_capture, self._seq)

    @abstractmethod
    def open(self) -> None: ...

    @abstractmethod
    def read(self, timeout: float) -> Frame | None: ...

    @abstractmethod
    def close(self) -> None: ...

    @property
    def expected_size(self) -> tuple[int, int] | None:
        """(width, height) frames must have, when known; other sizes are corrupt frames."""
        return None


class Pacer:
    """Hands out frames at `fps` like a camera would, sleeping in the caller's thread."""

    def __init__(self, fps: float):
        self.period = 1.0 / fps
        self.t_next = None

    def wait(self, timeout: float) -> bool:
        now = time.monotonic()
        if self.t_next is None or now - self.t_next > 1.0:     # first frame, or far behind: resync
            self.t_next = now
        delay = self.t_next - now
        if delay > timeout:
            time.sleep(timeout)
            return False
        if delay > 0:
            time.sleep(delay)
        self.t_next += self.period
        return True


# ----------------------------------------------------------------------------------------------
# real sources


class V4L2Camera(FrameSource):
    """A UVC/V4L2 camera, opened by /dev/v4l/by-id/... path (stable across reboots) or index.

    On open it applies the hardware profile (format, size, fps, fixed exposure and gain, buffer size 1,
    extra controls), reads every value back and logs what the driver really applied
    (hardware/camera.py)."""

    name = "v4l2"

    def __init__(self, profile):
        super().__init__()
        self.profile = profile
        self.cap = None
        self.applied = None
        self._timeout = None

    @property
    def device(self) -> str | int:
        d = self.profile.device
        return int(d) if d.isdigit() else d

    def open(self) -> None:
        from hardware.camera import apply_profile

        dev = self.device
        if isinstance(dev, str) and not os.path.exists(dev):
            raise SourceError(f"camera {dev} is not present (unplugged? check `ls /dev/v4l/by-id/`)")
        cap = cv2.VideoCapture(dev, cv2.CAP_V4L2)
        if not cap.isOpened():
            cap.release()
            raise SourceError(f"camera {dev} cannot be opened (busy, unplugged, or no V4L2 device)")
        try:
            self.applied = apply_profile(cap, self.profile)
        except Exception as e:                                   # a driver refusing a property
            cap.release()
            raise SourceError(f"camera {dev}: applying the profile failed: {e}") from e
        self.cap, self._timeout = cap, None

    def read(self, timeout: float) -> Frame | None:
        if self.cap is None:
            raise SourceError("camera is not open")
        if timeout != self._timeout:       # grab() then returns False instead of blocking for ~10 s
            self.cap.set(cv2.CAP_PROP_READ_TIMEOUT_MSEC, max(1.0, timeout * 1000))
            self._timeout = timeout
        ok = self.cap.grab()
        t = time.monotonic()
        if not ok:
            dev = self.device
            if isinstance(dev, str) and not os.path.exists(dev):
                raise SourceError(f"camera {dev} disappeared (unplugged)")
            return None
        ok, image = self.cap.retrieve()
        if not ok or image is None:
            return None
        return self._frame(to_gray(image), t)

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None

    @property
    def expected_size(self):
        return None if self.applied is None else self.applied.size


class VideoFileSource(FrameSource):
    """A recorded table session, paced at its own fps (or `fps`), optionally looping."""

    name = "video"

    def __init__(self, path: str | Path, fps: float | None = None, loop: bool = True):
        super().__init__()
        self.path, self.fps, self.loop = Path(path), fps, loop
        self.cap = None
        self.pacer = None

    def open(self) -> None:
        if not self.path.is_file():
            raise SourceError(f"video file {self.path} not found")
        cap = cv2.VideoCapture(str(self.path))
        if not cap.isOpened():
            raise SourceError(f"video file {self.path} cannot be decoded")
        fps = self.fps or cap.get(cv2.CAP_PROP_FPS) or 30.0
        self.cap, self.pacer = cap, Pacer(fps if fps > 0 else 30.0)

    def read(self, timeout: float) -> Frame | None:
        if self.cap is None:
            raise SourceError("video is not open")
        if not self.pacer.wait(timeout):
            return None
        ok, image = self.cap.read()
        if not ok and self.loop:
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
            ok, image = self.cap.read()
        if not ok:
            return None                       # end of a non-looping file: the table sees a stall
        return self._frame(to_gray(image))

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


class ImageFolderSource(FrameSource):
    """Images of a folder in name order, paced at `fps`, optionally looping."""

    name = "folder"

    def __init__(self, path: str | Path, fps: float = 10.0, loop: bool = True):
        super().__init__()
        self.path, self.fps, self.loop = Path(path), fps, loop
        self.files: list[Path] = []
        self.index = 0
        self.pacer = Pacer(fps)

    def open(self) -> None:
        if not self.path.is_dir():
            raise SourceError(f"image folder {self.path} not found")
        self.files = sorted(p for p in self.path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        if not self.files:
            raise SourceError(f"image folder {self.path} holds no {'/'.join(IMAGE_SUFFIXES)} images")
        self.index = 0

    def read(self, timeout: float) -> Frame | None:
        if not self.files:
            raise SourceError("image folder is not open")
        if self.index >= len(self.files):
            if not self.loop:
                return None
            self.index = 0
        if not self.pacer.wait(timeout):
            return None
        path = self.files[self.index]
        self.index += 1
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise SourceError(f"{path} cannot be read as an image")
        return self._frame(to_gray(image))

    def close(self) -> None:
        self.files = []


# ----------------------------------------------------------------------------------------------
# fault injection


@dataclass
class Fault:
    kind: Literal["stall", "unplug", "corrupt"]
    start_s: float              # seconds after the first open of the wrapped source
    duration_s: float
    rate: float = 1.0           # corrupt: fraction of frames damaged inside the window

    def __post_init__(self):
        if self.start_s < 0 or self.duration_s <= 0 or not 0 < self.rate <= 1:
            raise ValueError(f"fault {self.kind}: start_s >= 0, duration_s > 0 and rate in (0, 1] required")

    def active(self, t: float) -> bool:
        return self.start_s <= t < self.start_s + self.duration_s


CORRUPTIONS = ("truncated", "flat", "noise", "wrong_dtype")


class FaultInjectingSource(FrameSource):
    """Wraps a source and breaks it on a schedule: the camera faults a kiosk meets.

    stall: read() delivers nothing (the USB camera that stops streaming); unplug: read() and open()
    raise (the cable pulled); corrupt: frames come back truncated, flat, as noise or in the wrong
    dtype (broken MJPEG, USB glitches). Times are seconds from the first open."""

    def __init__(self, inner: FrameSource, faults: list[Fault], seed: int = 0):
        super().__init__()
        self.inner, self.faults = inner, list(faults)
        self.name = f"faulty-{inner.name}"
        self.rng = np.random.default_rng(seed)
        self.t0: float | None = None

    def _t(self) -> float:
        return 0.0 if self.t0 is None else time.monotonic() - self.t0

    def _active(self, kind: str) -> Fault | None:
        t = self._t()
        return next((f for f in self.faults if f.kind == kind and f.active(t)), None)

    def open(self) -> None:
        if self.t0 is None:
            self.t0 = time.monotonic()
        if self._active("unplug"):
            raise SourceError("injected fault: camera unplugged (open failed)")
        self.inner.open()

    def read(self, timeout: float) -> Frame | None:
        if self._active("unplug"):
            raise SourceError("injected fault: camera unplugged")
        stall = self._active("stall")
        if stall:
            time.sleep(min(timeout, stall.start_s + stall.duration_s - self._t()) + 1e-3)
            return None
        frame = self.inner.read(timeout)
        corrupt = self._active("corrupt")
        if frame is None or corrupt is None or self.rng.random() >= corrupt.rate:
            return frame
        kind = CORRUPTIONS[int(self.rng.integers(len(CORRUPTIONS)))]
        return Frame(self._damage(frame.image, kind), frame.t_capture, frame.seq)

    def _damage(self, image: np.ndarray, kind: str) -> np.ndarray:
        if kind == "truncated":
            return image[: image.shape[0] // 2].copy()
        if kind == "flat":
            return np.full_like(image, int(self.rng.integers(0, 256)))
        if kind == "noise":
            return self.rng.integers(0, 256, image.shape, dtype=np.uint8)
        return image.astype(np.float32)

    def close(self) -> None:
        self.inner.close()

    @property
    def expected_size(self):
        return self.inner.expected_size


# ----------------------------------------------------------------------------------------------
# validation and the reader thread


def frame_problem(image, expected_size: tuple[int, int] | None) -> str | None:
    """Why a frame is unusable, or None. Cheap enough for every frame."""
    if not isinstance(image, np.ndarray) or image.ndim != 2:
        return f"not a grey image ({getattr(image, 'shape', type(image).__name__)})"
    if image.dtype != np.uint8:
        return f"dtype {image.dtype}, expected uint8"
    if expected_size is not None and (image.shape[1], image.shape[0]) != tuple(expected_size):
        return f"size {image.shape[1]}x{image.shape[0]}, expected {expected_size[0]}x{expected_size[1]}"
    sub = image[::8, ::8]
    if int(sub.max()) - int(sub.min()) < 3:
        return "flat frame (no picture)"
    # Neighbouring pixels of a real scene are alike; of line noise they differ by ~85 grey levels.
    if np.abs(np.diff(image[::4].astype(np.int16), axis=1)).mean() > 40:
        return "noise frame (no picture)"
    return None


def _describe(e: Exception) -> str:
    return str(e) if isinstance(e, SourceError) else f"{type(e).__name__}: {e}"


@dataclass
class ReaderParams:
    poll_s: float = 0.25            # read timeout: how often the thread looks up from a silent camera
    lost_after_s: float = 1.0       # no valid frame for this long: the camera counts as lost
    reopen_after_s: float = 2.0     # a stalled (not erroring) source is closed and reopened after this
    backoff_s: float = 0.5          # first reopen delay, doubling ...
    backoff_max_s: float = 8.0      # ... up to this

    def __post_init__(self):
        if min(self.poll_s, self.lost_after_s, self.reopen_after_s, self.backoff_s, self.backoff_max_s) <= 0:
            raise ValueError("reader times must be positive")


@dataclass
class ReaderStatus:
    open: bool
    lost: bool
    since_frame_s: float
    reopens: int
    last_error: str | None = None


class LatestFrameReader:
    """Reads a source in a thread and keeps only its newest valid frame.

    The consumer never blocks: `latest()` returns the newest unseen frame or None. Frames overwritten
    before anybody took them are counted as dropped."""

    def __init__(self, source: FrameSource, metrics: Metrics, params: ReaderParams | None = None):
        self.source, self.metrics = source, metrics
        self.p = params or ReaderParams()
        self._lock = threading.Lock()
        self._latest: Frame | None = None
        self._taken = True
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._open = False
        self._t_last = self._t_opened = time.monotonic()
        self._reopens = 0
        self._last_error: str | None = None
        self._problems_logged = 0

    def start(self) -> "LatestFrameReader":
        self._t_last = time.monotonic()
        self._thread = threading.Thread(target=self._run, name=f"reader-{self.source.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
        self._close()

    def latest(self) -> Frame | None:
        with self._lock:
            if self._taken:
                return None
            self._taken = True
            return self._latest

    def status(self) -> ReaderStatus:
        since = time.monotonic() - self._t_last
        return ReaderStatus(self._open, since > self.p.lost_after_s, since, self._reopens, self._last_error)

    # -- thread ----------------------------------------------------------------------------------

    def _close(self) -> None:
        if self._open:
            try:
                self.source.close()
            except Exception as e:                    # closing a dead device may fail too; it is closed
                logger.debug(f"{self.source.name}: close failed: {e}")
            self._open = False

    def _fail(self, kind: str, message: str) -> None:
        self.metrics.error(kind)
        if message != self._last_error:
            logger.warning(f"{self.source.name}: {message}")
        self._last_error = message
        self._close()

    def _run(self) -> None:
        backoff = self.p.backoff_s
        first = True
        while not self._stop.is_set():
            if not self._open:
                if not first:
                    self._stop.wait(backoff)
                    backoff = min(2 * backoff, self.p.backoff_max_s)
                    if self._stop.is_set():
                        break
                    self._reopens += 1
                    self.metrics.count("camera_reopens")
                first = False
                # Any exception, not only SourceError: a driver or decoder error must not end this
                # thread, or the camera would stay lost until the kiosk is restarted.
                try:
                    self.source.open()
                    self._open = True
                    self._t_opened = time.monotonic()
                    logger.info(f"{self.source.name}: opened")
                except Exception as e:
                    self._fail("camera_open", _describe(e))
                continue
            try:
                frame = self.source.read(self.p.poll_s)
            except Exception as e:
                self._fail("camera_read", _describe(e))
                continue
            now = time.monotonic()
            if frame is None:
                if now - max(self._t_last, self._t_opened) > self.p.reopen_after_s:
                    self._fail("camera_stall", f"no frame for {now - self._t_last:.1f} s; reopening")
                continue
            problem = frame_problem(frame.image, self.source.expected_size)
            if problem:
                self.metrics.error("corrupt_frame")
                self.metrics.count("corrupt_frames")
                self._problems_logged += 1
                if self._problems_logged <= 20 or self._problems_logged % 100 == 0:
                    logger.warning(f"{self.source.name}: corrupt frame #{frame.seq} skipped: {problem} "
                                   f"({self._problems_logged} so far)")
                continue
            self._publish(frame, now)
            backoff = self.p.backoff_s
            if self._last_error is not None:
                logger.info(f"{self.source.name}: frames are back")
                self._last_error = None

    def _publish(self, frame: Frame, now: float) -> None:
        with self._lock:
            if not self._taken:
                self.metrics.count("dropped_frames")
            self._latest, self._taken = frame, False
            self._t_last = now
        self.metrics.count("frames_captured")
