"""The table loop: one state machine on the main thread, camera and model in their own threads.

    reader thread --Frame--> Vision --VisionResult--> Scheduler --Job--> worker thread
    worker thread --Result--> Blender --image--> Display (projector) --> latency, outputs

States: BOOT (capturing the blank-paper reference), RUN, ATTRACT (nobody drew for a while: a slow
walk through the latent space), CAMERA_LOST (no valid frame for `lost_after_s`; the reader keeps
reopening the camera), MODEL_ERROR (the last inference raised; the scheduler keeps retrying). Lost
and error states show a screen over the dimmed last picture and leave by themselves when things
work again. The loop renders at the display rate whatever the camera or the model do.
"""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import traceback
from enum import Enum
from pathlib import Path

import numpy as np
from loguru import logger

from calibration.drift import DriftResult, check_drift
from calibration.store import Calibration, identity_calibration, load_calibration
from common.atomic import atomic_write_text
from common.paths import REPO_ROOT
from installation.blend import Blender
from installation.config import TableConfig, resolve
from installation.display import Display
from installation.frames import Frame
from installation.metrics import Metrics
from installation.output import ImageWriter, contact_strip
from installation.scheduler import Scheduler
from installation.sources import (FaultInjectingSource, FrameSource, ImageFolderSource, LatestFrameReader,
                                  V4L2Camera, VideoFileSource)
from installation.synthetic import SyntheticTable
from installation.vision import Vision, VisionResult
from installation.worker import InferenceWorker, Job, Result


class State(str, Enum):
    BOOT = "BOOT"
    RUN = "RUN"
    ATTRACT = "ATTRACT"
    CAMERA_LOST = "CAMERA_LOST"
    MODEL_ERROR = "MODEL_ERROR"


SCREENS = {
    State.BOOT: ("Starting", "looking at the blank paper ..."),
    State.CAMERA_LOST: ("Camera lost", "reconnecting by itself; check the camera cable if this stays"),
    State.MODEL_ERROR: ("Model error", "retrying by itself; see the log for details"),
}
MAX_CONSECUTIVE_LOOP_ERRORS = 100
DRIFT_WAIT_S = 5.0           # the boot drift check waits this long for a camera frame, then is skipped
DRIFT_WORDS = {"off": "off (no calibration file)", "waiting": "waiting for the first camera frame",
               "skipped": f"skipped: no camera frame within {DRIFT_WAIT_S:.0f} s of the start"}


def build_source(cfg: TableConfig, camera_profile) -> FrameSource:
    s = cfg.source
    if s.kind == "camera":
        src: FrameSource = V4L2Camera(camera_profile)
    elif s.kind == "video":
        src = VideoFileSource(resolve(s.path), s.fps, s.loop)
    elif s.kind == "folder":
        src = ImageFolderSource(resolve(s.path), s.fps or 10.0, s.loop)
    else:
        src = SyntheticTable(s.synthetic)
    return FaultInjectingSource(src, s.faults, seed=s.synthetic.seed) if s.faults else src


def build_calibration(cfg: TableConfig, source: FrameSource, hardware, projector_size) -> Calibration:
    """The calibration file; else the synthetic table's own paper; else identity (uncalibrated)."""
    if cfg.calibration is not None:
        return load_calibration(resolve(cfg.calibration))
    inner = source.inner if isinstance(source, FaultInjectingSource) else source
    if isinstance(inner, SyntheticTable):
        p = inner.p
        return identity_calibration((p.width, p.height), projector_size, inner.paper_corners().tolist())
    cam = hardware.camera
    roi = hardware.table.roi
    corners = None if roi is None else [[roi[0], roi[1]], [roi[0] + roi[2], roi[1]],
                                        [roi[0] + roi[2], roi[1] + roi[3]], [roi[0], roi[1] + roi[3]]]
    logger.warning("no calibration file configured: the whole camera frame (or table.roi) is taken as "
                   "the paper and projected unaligned; run `python -m calibration`")
    return identity_calibration((cam.width, cam.height), projector_size, corners)


class TableApp:
    def __init__(self, cfg: TableConfig, bundle, source: FrameSource, hardware, *, headless: bool = False,
                 out_dir: Path | None = None, metrics_out: Path | None = None, metrics: Metrics | None = None):
        self.cfg, self.bundle, self.hardware = cfg, bundle, hardware
        self.metrics = metrics or Metrics()
        self.out_dir, self.metrics_out = out_dir, metrics_out
        self.display = Display(cfg.display, hardware.display, headless)
        self.calibration = build_calibration(cfg, source, hardware, self.display.size)
        self.display.set_calibration(self.calibration)
        self.reader = LatestFrameReader(source, self.metrics, cfg.source.reader)
        self.vision = self._make_vision()
        self.scheduler = Scheduler(cfg.scheduler)
        self.worker = InferenceWorker(bundle, self.metrics, cfg.attract.truncation, cfg.model.threads,
                                      seed=cfg.attract.seed)
        self.blender = Blender(cfg.blend, size=bundle.output_size)
        self.writer = ImageWriter(self.metrics) if out_dir else None
        self.state = State.BOOT
        self.metrics.state(self.state.value)
        self.model_failed = False
        self.drift: DriftResult | None = None
        self._drift_due: float | None = None          # deadline while the drift check waits for a frame
        self.last: VisionResult | None = None
        self.generated: np.ndarray | None = None
        self.projected: np.ndarray | None = None
        self.t_activity = time.monotonic()
        self.quit_requested = False
        self._t_strip = self._t_frame = self._t_status = time.monotonic()
        self._n_strip = 0
        self._loop_errors = 0

    def _make_vision(self) -> Vision:
        w = self.cfg.vision.work_size
        return Vision(self.calibration.cam_to_paper_maps(w), tuple(self.calibration.camera_size),
                      self.bundle.input_size, self.cfg.vision)

    # -- lifecycle -------------------------------------------------------------------------------

    def run(self, seconds: float | None = None) -> None:
        """Run until `seconds` pass, `quit` is pressed or request_quit() is called."""
        self.reader.start()
        self.worker.start()
        self.vision.capture_reference()
        self._arm_drift_check()
        t_start = time.monotonic()
        period = 1.0 / self.cfg.display.fps
        t_next = t_start
        try:
            while not self.quit_requested and (seconds is None or time.monotonic() - t_start < seconds):
                self._guarded_step(time.monotonic())
                t_next += period
                delay = t_next - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                elif delay < -period:                       # far behind: do not try to catch up
                    t_next = time.monotonic()
        finally:
            self.shutdown()

    def request_quit(self) -> None:
        self.quit_requested = True

    def shutdown(self) -> None:
        self.reader.stop()
        self.worker.stop()
        if self.writer is not None:
            self._write_last()
            self.writer.close()
        self.write_metrics()
        self.display.close()
        s = self.metrics.summary()
        logger.info(f"stopped: {s['frames_captured']} frames, {s['inferences']} inferences, "
                    f"latency p50 {_ms(s['latency_ms_p50'])} p95 {_ms(s['latency_ms_p95'])}, "
                    f"{s['render_fps']:.1f} fps, {s['errors']} errors")

    def write_metrics(self) -> None:
        if self.metrics_out is not None:
            atomic_write_text(self.metrics_out, json.dumps(self.metrics.summary(), indent=2))

    # -- one frame -------------------------------------------------------------------------------

    def _guarded_step(self, now: float) -> None:
        """A bug in one frame must not take the table down; a bug in every frame must (exit 1, the
        service manager restarts the kiosk)."""
        try:
            self.step(now)
            self._loop_errors = 0
        except Exception:
            self._loop_errors += 1
            self.metrics.error("loop")
            logger.error(f"render loop error:\n{traceback.format_exc(limit=6)}")
            if self._loop_errors >= MAX_CONSECUTIVE_LOOP_ERRORS:
                raise

    def step(self, now: float) -> None:
        for action in self.display.poll():
            self.handle(action)
        frame = self.reader.latest()
        if frame is not None:
            t0 = time.perf_counter()
            v = self.vision.process(frame)
            self.metrics.observe("vision_ms", (time.perf_counter() - t0) * 1000)
            self._on_vision(v, now)
        if self._drift_due is not None:
            self._drift_step(frame, now)
        self._update_state(now)
        self._dispatch(now)
        result = self.worker.results.take()
        if result is not None:
            self._on_result(result, now)
        self._present(now)

    def _on_vision(self, v: VisionResult, now: float) -> None:
        self.last = v
        self.scheduler.offer(v)
        if v.changed or v.hand:
            self.t_activity = now
        if v.new_sheet:
            self.metrics.count("new_sheets")
            logger.info("new sheet: ink cleared" if not v.ink_px else "another sheet, already drawn on")
        if v.paper_shift:
            self.metrics.count("paper_shifts")
            logger.info("paper shift: ink moved with the sheet")

    def _set_state(self, new: State) -> None:
        if new != self.state:
            logger.info(f"state {self.state.value} -> {new.value}")
            if self.state == State.ATTRACT:
                self.scheduler.sent_version = None          # show the drawing again, not the walk
            self.state = new
            self.metrics.state(new.value)

    def _update_state(self, now: float) -> None:
        a = self.cfg.attract
        if self.reader.status().lost:
            new = State.CAMERA_LOST
        elif self.model_failed:
            new = State.MODEL_ERROR
        elif self.vision.reference is None:
            new = State.BOOT
        elif a.enabled and self.blender.has_result and now - self.t_activity > a.after_s:
            new = State.ATTRACT
        else:
            new = State.RUN
        self._set_state(new)

    def _dispatch(self, now: float) -> None:
        if self.state in (State.RUN, State.MODEL_ERROR):
            steps = self.cfg.blend.steps
            w_from = self.blender.latent_at(now) if steps > 1 else None
            job = self.scheduler.next_job(now, self.worker.idle, steps, w_from)
            if job is not None:
                self.worker.submit(job)
        elif (self.state == State.ATTRACT and self.worker.idle
              and self.blender.time_left(now) < 0.5 * self.cfg.attract.step_s):
            w_from = self.blender.result.latents[-1] if self.blender.result and self.blender.result.latents \
                else None
            self.worker.submit(Job("walk", w_from=w_from, steps=self.cfg.attract.steps))

    def _on_result(self, r: Result, now: float) -> None:
        self.scheduler.done(r, now)
        if not r.ok:
            self.model_failed = True
            return
        if r.job.kind == "walk" and self.state != State.ATTRACT:
            return                                            # a visitor came back meanwhile
        if self.model_failed and r.job.kind == "sketch":
            logger.info("model works again")
        self.model_failed = self.model_failed and r.job.kind != "sketch"
        duration = self.cfg.attract.step_s if r.job.kind == "walk" else None
        self.blender.push(r, now, duration)
        self.generated = r.images[-1]

    def _present(self, now: float) -> None:
        t0 = time.perf_counter()
        image, first, full = self.blender.frame(now)
        self.projected = self.display.project(image)
        screen = SCREENS.get(self.state)
        t_present = self.display.present(self.projected, screen, lambda: (self._thumbs(), self._lines()))
        self.metrics.presented(t_present)
        self.metrics.observe("render_ms", (time.perf_counter() - t0) * 1000)
        if screen is None:
            if first is not None and first.job.t_ink is not None:
                self.metrics.observe("latency_ms", (t_present - first.job.t_ink) * 1000)
            if full is not None and full.job.t_ink is not None:
                self.metrics.observe("latency_full_ms", (t_present - full.job.t_ink) * 1000)
        self._outputs(t_present)

    # -- boot drift check ------------------------------------------------------------------------

    def _arm_drift_check(self) -> None:
        """Compare the next camera frame's sheet with the calibration file's. Only a file holds
        corners measured on this table; the identity and synthetic fallbacks have nothing to drift from."""
        if self.cfg.calibration is None:
            return
        self.drift = None
        self._drift_due = time.monotonic() + DRIFT_WAIT_S
        self.metrics.set("drift_check", "waiting")
        self.metrics.set("drift_px", None)

    def _drift_step(self, frame: Frame | None, now: float) -> None:
        """Runs once, in the render loop (a few ms, during BOOT), on the first frame that arrives."""
        if frame is None:
            if now > self._drift_due:
                self._drift_due = None
                self.metrics.set("drift_check", "skipped")
                logger.warning(f"drift check {DRIFT_WORDS['skipped']}; the sheet's position was not compared "
                               "with the calibration")
            return
        self._drift_due = None
        t0 = time.perf_counter()
        d = self.drift = check_drift(frame.image, self.calibration, self.cfg.drift_tol_px)
        self.metrics.set("drift_px", d.offset_px)
        if d.ok:
            self.metrics.set("drift_check", "ok")
            logger.info(f"{d.message} ({(time.perf_counter() - t0) * 1000:.0f} ms)")
            return
        # Warn, do not stop: a picture a few mm off beats a dark table, and the message says what to fix.
        self.metrics.set("drift_check", "moved" if d.offset_px is not None else "sheet_not_found")
        self.metrics.error("calibration_drift")
        logger.warning(d.message)

    # -- operator --------------------------------------------------------------------------------

    def handle(self, action: str) -> None:
        logger.info(f"operator: {action}")
        if action == "quit":
            self.request_quit()
        elif action == "reference":
            self.vision.capture_reference()
        elif action == "snapshot":
            self.snapshot()
        elif action == "calibrate":
            self.recalibrate()

    def snapshot(self) -> Path | None:
        if self.last is None:
            logger.warning("snapshot: no frame yet")
            return None
        base = self.out_dir / "snapshots" if self.out_dir else resolve(self.cfg.output.snapshot_dir)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        writer = self.writer or ImageWriter(self.metrics)
        writer.write(base / f"{stamp}_strip.png", self._strip())
        writer.write(base / f"{stamp}_camera.png", self.last.frame.image)
        if writer is not self.writer:
            writer.close()
        logger.info(f"snapshot written to {base}/{stamp}_*.png")
        return base / f"{stamp}_strip.png"

    def recalibrate(self) -> None:
        """Hand camera and projector to the calibration tool, then reload its result."""
        if self.display.headless:
            logger.warning("calibration needs the projector: not available headless")
            return
        cmd = list(self.cfg.calibration_command)
        if cmd and cmd[0] in ("python", "python3"):
            cmd[0] = sys.executable                     # the kiosk's own interpreter and venv
        logger.info(f"calibration: running {' '.join(cmd)}")
        self.reader.stop()
        self.display.close()
        try:
            rc = subprocess.run(cmd, cwd=REPO_ROOT).returncode
        except OSError as e:
            rc = None
            logger.error(f"calibration command failed to start: {e}")
        self.display = Display(self.cfg.display, self.hardware.display, False)
        if rc == 0 and self.cfg.calibration is not None:
            try:
                self.calibration = load_calibration(resolve(self.cfg.calibration))
                self.vision = self._make_vision()
                self._arm_drift_check()                 # an old drift warning no longer applies
            except ValueError as e:
                logger.error(f"new calibration unusable, keeping the old one: {e}")
        elif rc != 0:
            logger.error(f"calibration exited with {rc}; keeping the old calibration")
        self.display.set_calibration(self.calibration)
        self.vision.capture_reference()
        self.reader = LatestFrameReader(self.reader.source, self.metrics, self.cfg.source.reader).start()

    # -- pictures and words ----------------------------------------------------------------------

    def _ink_view(self) -> np.ndarray | None:
        v = self.last
        if v is None:
            return None
        img = np.full(v.committed.shape + (3,), 255, np.uint8)
        img[v.candidate] = (150, 150, 150)
        img[v.committed] = (0, 0, 0)
        img[v.hand_mask] = (img[v.hand_mask] * 0.5 + np.array([120, 0, 0])).astype(np.uint8)
        return img

    def _thumbs(self) -> list:
        v = self.last
        if v is None:
            return []
        return [("camera", v.frame.image), ("paper", v.paper), ("flat-field", v.flat),
                ("ink / hand", self._ink_view()), ("sketch", v.sketch), ("generated", self.generated)]

    def _lines(self) -> list[str]:
        m, s, v = self.metrics, self.reader.status(), self.last
        flags = [] if v is None else [k for k in ("hand", "new_sheet", "paper_shift") if getattr(v, k)]
        return [
            f"state {self.state.value}   fps {m.recent_fps():.1f}   camera: "
            + ("open" if s.open else "closed") + f", reopens {s.reopens}, last frame {s.since_frame_s:.1f} s ago",
            f"latency ink->light p50 {_ms(m.percentile('latency_ms', 50))}  p95 {_ms(m.percentile('latency_ms', 95))}"
            f"   inference p50 {_ms(m.percentile('inference_ms', 50))}  p95 {_ms(m.percentile('inference_ms', 95))}",
            f"frames {m.get('frames_captured')}  dropped {m.get('dropped_frames')}  corrupt "
            f"{m.get('corrupt_frames')}  inferences {m.get('inferences')}  errors {m.errors_total()}",
            f"ink {0 if v is None else v.ink_px} px (version {0 if v is None else v.ink_version})  "
            f"{'capturing the blank reference  ' if self.vision.capturing else ''}{' '.join(flags)}   "
            f"model {self.bundle.meta.get('path', '?')}",
        ] + self._drift_lines()

    def _drift_lines(self) -> list[str]:
        """The boot drift check; a failed one in full, because its message says what to fix."""
        d = self.drift
        if d is None:
            return [f"drift check {DRIFT_WORDS.get(self.metrics.value('drift_check', 'off'), '')}"]
        return [d.message] if d.ok else textwrap.wrap(d.message, 90, initial_indent="WARNING ",
                                                       subsequent_indent=" " * 8)

    def _strip(self) -> np.ndarray:
        v = self.last
        h = 240
        blank = np.zeros((h, h), np.uint8)
        return contact_strip([
            ("input frame", v.frame.image if v is not None else blank),
            ("binarized", v.sketch if v is not None else blank),
            ("generated", self.generated if self.generated is not None else blank),
            ("projected", self.projected if self.projected is not None else blank),
        ], h)

    def _outputs(self, now: float) -> None:
        o = self.cfg.output
        if now - self._t_status >= self.cfg.logging.status_every_s:
            self._t_status = now
            logger.info(" | ".join(self._lines()[:3]))
            self.write_metrics()
        if self.writer is None:
            return
        if o.strip_every_s and now - self._t_strip >= o.strip_every_s and self.last is not None:
            self._t_strip = now
            self._n_strip += 1
            self.writer.write(self.out_dir / f"strip_{self._n_strip:04d}.png", self._strip(), "strip", 500)
        if self.display.headless and o.frame_every_s and now - self._t_frame >= o.frame_every_s:
            self._t_frame = now
            n = self.metrics.get("frames_presented")
            self.writer.write(self.out_dir / "frames" / f"frame_{n:07d}.png", self.projected, "frames",
                              o.keep_frames)

    def _write_last(self) -> None:
        v, d = self.last, self.out_dir
        if v is not None:
            self.writer.write(d / "last_input.png", v.frame.image)
            self.writer.write(d / "last_binarized.png", (v.sketch * 255).astype(np.uint8))
            self.writer.write(d / "last_strip.png", self._strip())
        if self.generated is not None:
            self.writer.write(d / "last_generated.png", (self.generated * 255 + 0.5).astype(np.uint8))
        if self.projected is not None:
            self.writer.write(d / "last_projected.png", self.projected)


def _ms(v: float | None) -> str:
    return "-" if v is None else f"{v:.0f} ms"
