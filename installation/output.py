"""Pictures on disk: contact strips (input | binarized | generated | projected), headless frames,
snapshots. PNGs are encoded and written in a background thread (atomic writes, a bounded queue that
drops rather than stalls the render loop)."""
from __future__ import annotations

import queue
import threading
from pathlib import Path

import cv2
import numpy as np
from loguru import logger

from common.atomic import atomic_write_bytes
from installation.metrics import Metrics

STRIP_HEIGHT = 240


def _panel(label: str, image: np.ndarray, height: int) -> np.ndarray:
    if image.dtype != np.uint8:
        image = np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    w = max(1, int(round(image.shape[1] * height / image.shape[0])))
    interp = cv2.INTER_AREA if image.shape[0] > height else cv2.INTER_NEAREST
    panel = cv2.resize(image, (w, height), interpolation=interp)
    panel = cv2.copyMakeBorder(panel, 0, 26, 0, 0, cv2.BORDER_CONSTANT, value=(24, 24, 24))
    cv2.putText(panel, label, (6, height + 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (235, 235, 235), 1, cv2.LINE_AA)
    return panel


def contact_strip(panels: list[tuple[str, np.ndarray]], height: int = STRIP_HEIGHT) -> np.ndarray:
    """Labelled panels side by side: uint8 RGB. Panels are float [0, 1] or uint8, grey or RGB."""
    tiles = [_panel(label, img, height) for label, img in panels]
    gap = np.full((height + 26, 6, 3), 24, np.uint8)
    row = [tiles[0]]
    for t in tiles[1:]:
        row += [gap, t]
    return np.hstack(row)


def encode_png(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR) if rgb.ndim == 3 else rgb)
    if not ok:
        raise ValueError("PNG encoding failed")
    return buf.tobytes()


class ImageWriter:
    """Writes PNGs off the render thread; keeps only the newest `keep` files of each rotating series."""

    def __init__(self, metrics: Metrics, max_queue: int = 8):
        self.metrics = metrics
        self._q: queue.Queue = queue.Queue(maxsize=max_queue)
        self._series: dict[str, list[Path]] = {}
        self._thread = threading.Thread(target=self._run, name="png-writer", daemon=True)
        self._thread.start()

    def write(self, path: Path, rgb: np.ndarray, series: str | None = None, keep: int = 0) -> None:
        try:
            self._q.put_nowait((Path(path), rgb, series, keep))
        except queue.Full:
            self.metrics.count("images_dropped")

    def _run(self) -> None:
        while True:
            item = self._q.get()
            if item is None:
                self._q.task_done()
                return
            path, rgb, series, keep = item
            try:
                atomic_write_bytes(path, encode_png(rgb))
                if series and keep:
                    files = self._series.setdefault(series, [])
                    files.append(path)
                    while len(files) > keep:
                        files.pop(0).unlink(missing_ok=True)
            except (OSError, ValueError) as e:           # a full disk must not stop the table
                self.metrics.error("disk")
                logger.error(f"cannot write {path}: {e}")
            finally:
                self._q.task_done()

    def close(self, timeout: float = 10.0) -> None:
        """Finish what is queued (the last frames matter), then stop."""
        try:
            self._q.put(None, timeout=timeout)
        except queue.Full:
            logger.error("image writer stuck: some pictures were not written")
            return
        self._thread.join(timeout)
