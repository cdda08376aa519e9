"""When to run the model: change-gated, rate-limited, newest wins, with a periodic refresh.

Inference runs only when the committed ink changed (a still drawing costs nothing), at most once per
`min_interval_s`, and only when the worker is free; while it is busy, newer ink simply replaces the
pending sketch. The pending change remembers the capture time of its *oldest* unanswered ink, so the
latency metric counts the wait of the first stroke, not of the last. A refresh re-runs the current
sketch now and then (and, after a model error, retries every `error_retry_s`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from installation.vision import VisionResult
from installation.worker import Job, Result


@dataclass
class SchedulerParams:
    min_interval_s: float = 0.1       # between two sketch inferences
    refresh_s: float = 60.0           # re-run an unchanged sketch this often (0 = never)
    error_retry_s: float = 2.0        # after a failed job

    def __post_init__(self):
        if self.min_interval_s < 0 or self.refresh_s < 0 or self.error_retry_s <= 0:
            raise ValueError("scheduler: min_interval_s, refresh_s >= 0 and error_retry_s > 0 required")


class Scheduler:
    def __init__(self, params: SchedulerParams | None = None):
        self.p = params or SchedulerParams()
        self.sketch: np.ndarray | None = None
        self.version = -1
        self.t_unanswered: float | None = None     # oldest ink not yet sent to the model
        self.sent_version: int | None = None
        self.t_sent = -1e9
        self.t_failed: float | None = None

    def offer(self, v: VisionResult) -> None:
        """Take the newest vision result (only ink changes matter)."""
        if not v.ready or v.ink_version == self.version:
            return
        self.sketch, self.version = v.sketch, v.ink_version
        if v.t_ink is not None:
            self.t_unanswered = v.t_ink if self.t_unanswered is None else min(self.t_unanswered, v.t_ink)

    @property
    def pending(self) -> bool:
        return self.sketch is not None and self.version != self.sent_version

    def next_job(self, now: float, worker_idle: bool, steps: int = 1, w_from=None) -> Job | None:
        """The sketch job to run now, or None."""
        if not worker_idle or self.sketch is None:
            return None
        since = now - self.t_sent
        if self.t_failed is not None:
            if now - self.t_failed < self.p.error_retry_s:
                return None
        elif self.pending:
            if since < self.p.min_interval_s:
                return None
        elif not (self.p.refresh_s and since >= self.p.refresh_s):
            return None
        job = Job("sketch", self.sketch, self.version, self.t_unanswered, w_from, steps)
        self.sent_version, self.t_sent, self.t_unanswered = self.version, now, None
        return job

    def done(self, result: Result, now: float) -> None:
        """Feedback from the worker: after a failure (of any job) the sketch is retried every
        `error_retry_s`, which is also how the table finds out that the model works again."""
        if result.ok:
            if result.job.kind == "sketch":
                self.t_failed = None
            return
        self.t_failed = now
        if result.job.kind == "walk" or result.job.ink_version == self.version:
            self.sent_version = None
        t = result.job.t_ink
        if t is not None:
            self.t_unanswered = t if self.t_unanswered is None else min(self.t_unanswered, t)
