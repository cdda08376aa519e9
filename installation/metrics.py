"""One small metrics registry: counters, bounded latency histograms and the state log.

The overlay, the metrics JSON (`--metrics-out`) and the periodic log line all read this object, so the
numbers a technician sees on screen are the numbers in the file. Thread-safe: the camera reader and
the inference worker write from their own threads. Histograms keep the newest `window` samples so a
kiosk running for months holds bounded memory.
"""
from __future__ import annotations

import threading
import time
from collections import deque

import numpy as np

# The keys the checker of `--metrics-out` relies on (see run_table.py).
REQUIRED_KEYS = ("frames_captured", "inferences", "latency_ms_p50", "latency_ms_p95", "inference_ms_p50",
                 "inference_ms_p95", "render_fps", "dropped_frames", "errors", "state_changes")


class Metrics:
    def __init__(self, window: int = 10_000):
        self._lock = threading.Lock()
        self._window = window
        self.counters: dict[str, int] = {}
        self.errors_by_kind: dict[str, int] = {}
        self.values: dict[str, object] = {}               # last known values, e.g. the boot drift check's
        self.hist: dict[str, deque] = {}
        self.state_log: list[tuple[float, str]] = []      # (monotonic time, state entered)
        self.t_start = time.monotonic()
        self._frames_presented_at: deque = deque(maxlen=120)

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + n

    def error(self, kind: str) -> None:
        """Every survived fault goes through here: corrupt frame, camera read/open, model, disk."""
        with self._lock:
            self.errors_by_kind[kind] = self.errors_by_kind.get(kind, 0) + 1

    def set(self, name: str, value) -> None:
        """A value that is replaced, not counted or collected (a check's outcome, a measured offset)."""
        with self._lock:
            self.values[name] = value

    def value(self, name: str, default=None):
        with self._lock:
            return self.values.get(name, default)

    def observe(self, name: str, value: float) -> None:
        with self._lock:
            h = self.hist.get(name)
            if h is None:
                h = self.hist[name] = deque(maxlen=self._window)
            h.append(float(value))

    def state(self, name: str, t: float | None = None) -> None:
        with self._lock:
            self.state_log.append((time.monotonic() if t is None else t, name))
            if len(self.state_log) > 1:
                self.counters["state_changes"] = self.counters.get("state_changes", 0) + 1
            del self.state_log[:-1000]

    def presented(self, t: float) -> None:
        with self._lock:
            self.counters["frames_presented"] = self.counters.get("frames_presented", 0) + 1
            self._frames_presented_at.append(t)

    def get(self, name: str) -> int:
        with self._lock:
            return self.counters.get(name, 0)

    def errors_total(self) -> int:
        with self._lock:
            return sum(self.errors_by_kind.values())

    def samples(self, name: str) -> int:
        with self._lock:
            return len(self.hist.get(name, ()))

    def percentile(self, name: str, q: float) -> float | None:
        with self._lock:
            h = self.hist.get(name)
            values = np.fromiter(h, float) if h else None
        return None if values is None else float(np.percentile(values, q))

    def recent_fps(self) -> float:
        """Presentation rate over the last ~120 frames (what the overlay shows)."""
        with self._lock:
            t = list(self._frames_presented_at)
        return (len(t) - 1) / (t[-1] - t[0]) if len(t) > 1 and t[-1] > t[0] else 0.0

    def summary(self) -> dict:
        """The metrics JSON: every REQUIRED_KEYS entry plus the breakdowns behind them."""
        elapsed = max(time.monotonic() - self.t_start, 1e-9)
        with self._lock:
            c = dict(self.counters)
            errors = dict(self.errors_by_kind)
            states = [s for _, s in self.state_log]
            values = dict(self.values)
        out = {
            "frames_captured": c.get("frames_captured", 0),
            "inferences": c.get("inferences", 0),
            "latency_ms_p50": self.percentile("latency_ms", 50),
            "latency_ms_p95": self.percentile("latency_ms", 95),
            "inference_ms_p50": self.percentile("inference_ms", 50),
            "inference_ms_p95": self.percentile("inference_ms", 95),
            "render_fps": c.get("frames_presented", 0) / elapsed,
            "dropped_frames": c.get("dropped_frames", 0),
            "errors": sum(errors.values()),
            "state_changes": c.get("state_changes", 0),
            "errors_by_kind": errors,
            # boot drift check: off (no calibration file) | waiting | ok | moved | sheet_not_found | skipped
            "drift_check": values.get("drift_check", "off"),
            "drift_px": values.get("drift_px"),           # largest corner offset, camera px (None: not measured)
            "latency_samples": self.samples("latency_ms"),
            "latency_full_ms_p50": self.percentile("latency_full_ms", 50),
            "latency_full_ms_p95": self.percentile("latency_full_ms", 95),
            "vision_ms_p50": self.percentile("vision_ms", 50),
            "render_ms_p50": self.percentile("render_ms", 50),
            "render_ms_p95": self.percentile("render_ms", 95),
            "seconds": elapsed,
            "counters": c,
            "states": states,
        }
        assert all(k in out for k in REQUIRED_KEYS)
        return out
