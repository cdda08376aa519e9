"""Inference off the render loop: a worker thread, single-slot mailboxes, jobs and results.

The render loop never waits: it posts a Job into a one-slot mailbox (a newer job replaces one not yet
started) and picks up the newest Result when there is one. PyTorch releases the GIL inside its
kernels, so a thread is enough; the model is used by this thread only.

Jobs:
- "sketch": the sketch -> W+ (bundle.encode) -> images (bundle.synthesize). With `steps` > 1 and the
  latent on screen (`w_from`), the images are rendered from W+ interpolated between the two, so the
  blender can show the drawing morph in latent space instead of a pixel crossfade.
- "walk": the attract mode's slow walk: from `w_from` to a new random W (mapping network, truncated
  towards the average), `steps` images along the way.
"""
from __future__ import annotations

import threading
import time
import traceback
from dataclasses import dataclass, field
from typing import Generic, Literal, TypeVar

import numpy as np
import torch
from loguru import logger

from installation.metrics import Metrics

T = TypeVar("T")


class Mailbox(Generic[T]):
    """One slot, newest wins. `put` returns the item it displaced (or None)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._item: T | None = None

    def put(self, item: T) -> T | None:
        with self._cond:
            old, self._item = self._item, item
            self._cond.notify_all()
            return old

    def take(self, timeout: float | None = 0.0) -> T | None:
        with self._cond:
            if self._item is None and timeout:
                self._cond.wait(timeout)
            item, self._item = self._item, None
            return item

    def __bool__(self) -> bool:
        with self._cond:
            return self._item is not None


@dataclass
class Job:
    kind: Literal["sketch", "walk"]
    sketch: np.ndarray | None = None          # float32 [S, S], paper = 1, ink = 0
    ink_version: int = -1
    t_ink: float | None = None                # capture time of the oldest ink this answers (None: no latency)
    w_from: torch.Tensor | None = None        # W+ [n_latent, style_dim] on screen now
    steps: int = 1


@dataclass
class Result:
    job: Job
    images: list[np.ndarray] = field(default_factory=list)   # float32 [H, W, 3] in [0, 1]; last = the answer
    latents: list[torch.Tensor] | None = None                # W+ per image
    inference_ms: float = 0.0
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def to_rgb01(images: torch.Tensor) -> list[np.ndarray]:
    """Generator output [B, C, H, W] in [-1, 1] -> float32 [H, W, 3] in [0, 1] (grey repeated)."""
    if images.dim() != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"generator output must be [B, 1 or 3, H, W], got {list(images.shape)}")
    x = ((images.detach().float().cpu() + 1) / 2).clamp_(0, 1)
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    return [np.ascontiguousarray(i.permute(1, 2, 0).numpy()) for i in x]


class InferenceWorker:
    """Runs jobs on a Bundle (see docs/CONTRACTS.md: encode, synthesize, generator.style,
    latent_avg, input_size) in its own thread."""

    def __init__(self, bundle, metrics: Metrics, truncation: float = 0.7, threads: int = 0, seed: int | None = 0):
        self.bundle, self.metrics = bundle, metrics
        self.truncation, self.threads = truncation, threads
        self.jobs: Mailbox[Job] = Mailbox()
        self.results: Mailbox[Result] = Mailbox()
        self._busy = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._rng = torch.Generator()
        if seed is None:
            self._rng.seed()
        else:
            self._rng.manual_seed(seed)

    # -- render-loop side ------------------------------------------------------------------------

    def start(self) -> "InferenceWorker":
        self._thread = threading.Thread(target=self._run, name="inference", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self.jobs.put(None)             # wake the thread
        if self._thread is not None:
            self._thread.join(timeout)

    @property
    def idle(self) -> bool:
        return not self._busy.is_set() and not self.jobs

    def submit(self, job: Job) -> None:
        if self.jobs.put(job) is not None:
            self.metrics.count("jobs_superseded")

    # -- thread side -----------------------------------------------------------------------------

    def _run(self) -> None:
        if self.threads:
            torch.set_num_threads(self.threads)
        while not self._stop.is_set():
            job = self.jobs.take(timeout=0.5)
            if job is None:
                continue
            self._busy.set()
            try:
                self.results.put(self.run_job(job))
            finally:
                self._busy.clear()

    def run_job(self, job: Job) -> Result:
        """Run one job; a model exception becomes an error Result (counted and logged), never a crash."""
        t0 = time.perf_counter()
        try:
            with torch.inference_mode():
                images, latents = (self._sketch if job.kind == "sketch" else self._walk)(job)
            ms = (time.perf_counter() - t0) * 1000
            self.metrics.count("inferences")
            self.metrics.observe("inference_ms", ms)
            return Result(job, images, latents, ms)
        except Exception as e:       # the model is third-party weights on a GPU: anything can happen
            self.metrics.error("model")
            self.metrics.count("model_errors")
            logger.error(f"inference failed on a {job.kind} job: {type(e).__name__}: {e}\n"
                         f"{''.join(traceback.format_exc(limit=4))}")
            return Result(job, error=f"{type(e).__name__}: {e}", inference_ms=(time.perf_counter() - t0) * 1000)

    def _path(self, w_from: torch.Tensor | None, w_to: torch.Tensor, steps: int) -> torch.Tensor:
        """W+ at t = 1/steps .. 1 between w_from and w_to: [steps, n_latent, style_dim]."""
        if w_from is None or steps <= 1:
            return w_to.unsqueeze(0)
        t = torch.linspace(1.0 / steps, 1.0, steps, device=w_to.device, dtype=w_to.dtype).view(-1, 1, 1)
        w_from = w_from.to(w_to.device, w_to.dtype)
        return w_from + t * (w_to - w_from)

    def _sketch(self, job: Job):
        s = self.bundle.input_size
        if job.sketch is None or job.sketch.shape != (s, s):
            raise ValueError(f"sketch must be [{s}, {s}], got {None if job.sketch is None else job.sketch.shape}")
        x = torch.from_numpy(np.ascontiguousarray(job.sketch, np.float32)).view(1, 1, s, s)
        w = self.bundle.encode(x)[0]
        ws = self._path(job.w_from, w, job.steps)
        return to_rgb01(self.bundle.synthesize(ws)), [v.detach().cpu() for v in ws]

    def random_w(self) -> torch.Tensor:
        """A W+ sample of the mapping network, truncated towards latent_avg: [n_latent, style_dim]."""
        b = self.bundle
        avg = b.latent_avg
        z = torch.randn(1, avg.shape[-1], generator=self._rng).to(avg.device, avg.dtype)
        w = b.generator.style(z)[0]
        return avg + self.truncation * (w.unsqueeze(0) - avg)

    def _walk(self, job: Job):
        w_from = job.w_from if job.w_from is not None else self.bundle.latent_avg.detach().cpu()
        ws = self._path(w_from, self.random_w(), max(1, job.steps))
        return to_rgb01(self.bundle.synthesize(ws)), [v.detach().cpu() for v in ws]
