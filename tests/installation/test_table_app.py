"""The whole loop, headless, for a few seconds each (acceptance 3 and the metrics contract).

The model is the IdentityBundle test double (its "generated" image is the sketch itself), so the
assertions can check what the projector shows, and RaisingBundle injects model faults; camera faults
come from FaultInjectingSource, as configured in the table YAML."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
from loguru import logger

from common.paths import REPO_ROOT
from table_helpers import write_config
from table_fakes import IdentityBundle, RaisingBundle
from hardware.profiles import load_profile
from installation.app import TableApp, build_source
from installation.config import load_table_config
from installation.metrics import REQUIRED_KEYS
from installation.synthetic import SyntheticParams, SyntheticTable

S = 32


class PresentLog:
    """Test instrumentation: records (time, screen title) of every presented frame."""

    def __init__(self, display):
        self.inner, self.items = display.present, []
        display.present = self

    def __call__(self, frame, message=None, overlay=None):
        t = self.inner(frame, message, overlay)
        self.items.append((t, None if message is None else message[0]))
        return t

    def between(self, t0, t1):
        return [m for t, m in self.items if t0 <= t < t1]


def make_app(tmp_path, bundle=None, frame_source=None, out=False, **sections) -> TableApp:
    cfg = load_table_config(write_config(tmp_path / "table.yaml", Path("unused-model.pt"), **sections))
    hw = load_profile(REPO_ROOT / "hardware/profiles/default.yaml")
    return TableApp(cfg, bundle or IdentityBundle(S, 256), frame_source or build_source(cfg, hw.camera), hw,
                    headless=True, out_dir=tmp_path / "out" if out else None,
                    metrics_out=tmp_path / "out" / "metrics.json" if out else None)


def states(app):
    return [(t, s) for t, s in app.metrics.state_log]


def entered(app, state, after, before):
    return [t for t, s in states(app) if s == state and after <= t <= before]


def test_loop_shows_the_drawing_where_the_paper_is_and_writes_metrics(tmp_path):
    app = make_app(tmp_path, out=True, blend={"mode": "crossfade", "duration_s": 0.2},
                   attract={"enabled": False}, output={"strip_every_s": 1.0, "frame_every_s": 0.5})
    app.run(5.0)
    m = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert all(k in m for k in REQUIRED_KEYS)
    assert m["frames_captured"] > 60 and m["inferences"] >= 3 and m["errors"] == 0
    assert m["latency_samples"] >= 3 and 0 < m["latency_ms_p50"] <= m["latency_ms_p95"] < 2000
    assert m["render_fps"] > 10 and m["states"][:2] == ["BOOT", "RUN"]
    # the last answer is the last sketch sent (identity model), and the projector shows it on the paper
    r = app.blender.result
    assert np.allclose(r.images[-1][..., 0], r.job.sketch) and (r.job.sketch == 0).sum() > 10
    projected = app.display.project(r.images[-1])
    back = cv2.warpPerspective(projected[..., 0], np.linalg.inv(_fb_homography(app)), (S, S),
                               flags=cv2.INTER_AREA | cv2.WARP_FILL_OUTLIERS)
    ink_shown, ink_sent = back < 128, r.job.sketch == 0
    assert (ink_shown & ink_sent).sum() / ink_sent.sum() > 0.8 and (ink_shown & ~ink_sent).sum() < ink_sent.sum()
    out = tmp_path / "out"
    for name in ("last_input.png", "last_binarized.png", "last_generated.png", "last_projected.png",
                 "last_strip.png", "strip_0001.png"):
        assert cv2.imread(str(out / name)) is not None, name
    strip = cv2.imread(str(out / "strip_0001.png"))
    assert strip.shape[0] == 240 + 26 and strip.shape[1] > 4 * 240
    assert 1 <= len(list((out / "frames").glob("frame_*.png"))) <= 30


def _fb_homography(app) -> np.ndarray:
    """Paper [0, S]^2 -> framebuffer px, the way the display scales the calibration."""
    pw, ph = app.calibration.projector_size
    w, h = app.display.size
    return np.diag([w / pw, h / ph, 1.0]) @ app.calibration.paper_to_projector(S)


def test_stalled_and_unplugged_camera_show_the_lost_screen_and_recover(tmp_path):
    faults = [{"kind": "stall", "start_s": 1.5, "duration_s": 2.6},           # long enough to be reopened
              {"kind": "unplug", "start_s": 5.5, "duration_s": 1.5}]
    app = make_app(tmp_path, source={"faults": faults}, attract={"enabled": False})
    log = PresentLog(app.display)
    app.run(10.0)
    t0 = app.reader.source.t0
    for f in faults:
        start, end = t0 + f["start_s"], t0 + f["start_s"] + f["duration_s"]
        lost = entered(app, "CAMERA_LOST", start, start + 2.0)
        assert lost, f"{f['kind']}: no camera-lost screen within 2 s ({states(app)})"
        back = entered(app, "RUN", end, end + 3.0)
        assert back, f"{f['kind']}: did not recover by itself ({states(app)})"
        during = log.between(lost[0], back[0])
        assert during and all(m == "Camera lost" for m in during)
        assert len(during) >= 0.5 * 30 * (back[0] - lost[0])          # the loop kept rendering
    errors = app.metrics.summary()["errors_by_kind"]
    assert errors.get("camera_stall", 0) >= 1 and errors.get("camera_read", 0) >= 1
    assert app.reader.status().reopens >= 2


def test_corrupt_frames_and_model_exceptions_are_counted_logged_and_survived(tmp_path):
    lines = []
    sink = logger.add(lambda msg: lines.append(str(msg)), level="WARNING")
    t0 = time.monotonic()
    bundle = RaisingBundle(IdentityBundle(S, 256), t0 + 2.0, t0 + 3.2)
    app = make_app(tmp_path, bundle=bundle, attract={"enabled": False},
                   source={"faults": [{"kind": "corrupt", "start_s": 0.5, "duration_s": 5.0, "rate": 0.3}]},
                   scheduler={"min_interval_s": 0.1, "error_retry_s": 0.5})
    log = PresentLog(app.display)
    try:
        app.run(6.0)
    finally:
        logger.remove(sink)
    s = app.metrics.summary()
    assert app.metrics.get("corrupt_frames") >= 10 and s["errors_by_kind"]["corrupt_frame"] >= 10
    assert any("corrupt frame" in line for line in lines)
    assert bundle.raised >= 1 and s["errors_by_kind"]["model"] == bundle.raised
    assert any("inference failed" in line and "injected model fault" in line for line in lines)
    err = entered(app, "MODEL_ERROR", t0 + 2.0, t0 + 3.5)
    assert err and entered(app, "RUN", err[0], t0 + 6.0), states(app)
    assert any(m == "Model error" for m in log.between(err[0], t0 + 6.0))
    assert s["errors"] == sum(s["errors_by_kind"].values())
    assert len(log.items) >= 0.5 * 30 * 6                                  # rendering never stopped
    # garbage frames never reached the ink
    assert app.vision.committed.mean() < 0.1


def test_attract_mode_walks_when_nobody_draws_and_returns_on_a_new_sheet(tmp_path):
    line = [np.array([[0.3, 0.5], [0.7, 0.5]])]
    src = SyntheticTable(SyntheticParams(width=320, height=240, canvas=256, seed=2, idle_s=0.3, hold_s=3.5,
                                         pass_prob=0.0, shift_prob=0.0), drawings=[line])
    app = make_app(tmp_path, frame_source=src, attract={"enabled": True, "after_s": 0.8, "step_s": 0.6, "steps": 2},
                   blend={"mode": "latent", "duration_s": 0.3, "latent_steps": 3})
    kinds = []
    orig = app.blender.push

    def record(result, now, duration=None):
        kinds.append(result.job.kind)
        orig(result, now, duration)

    app.blender.push = record
    app.run(6.5)
    seq = [s for _, s in states(app)]
    assert "ATTRACT" in seq and seq.index("ATTRACT") < len(seq) - 1 and seq[seq.index("ATTRACT") + 1] == "RUN"
    assert kinds.count("walk") >= 2
    first_walk = kinds.index("walk")
    assert "sketch" in kinds[first_walk:]                        # the next drawing replaced the walk
    assert app.metrics.get("new_sheets") >= 1


def test_cli_end_to_end_on_a_random_model(tmp_path, tiny_model):
    """The real command line on a real (randomly initialised, 32 px) model saved with models.save:
    exit 0, the metrics JSON and the contact strips. --demo switches a camera config to the synthetic table."""
    cfg = write_config(tmp_path / "table.yaml", tiny_model, source={"kind": "camera"}, output={"strip_every_s": 2.0})
    out = tmp_path / "out"
    p = subprocess.run([sys.executable, "run_table.py", "--config", str(cfg), "--demo", "--headless",
                        "--seconds", "4", "--out", str(out), "--metrics-out", str(out / "m.json")],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr[-3000:]
    m = json.loads((out / "m.json").read_text())
    assert all(k in m for k in REQUIRED_KEYS)
    assert m["frames_captured"] > 30 and m["inferences"] >= 2 and m["errors"] == 0
    assert m["inference_ms_p50"] > 0 and m["latency_samples"] >= 1
    assert (out / "strip_0001.png").is_file() and (out / "last_projected.png").is_file()
    assert "source synthetic" in p.stderr


def test_operator_keys_overlay_snapshot_and_new_reference(tmp_path):
    import pygame

    app = make_app(tmp_path, out=True, attract={"enabled": False})
    app.reader.start()
    app.worker.start()
    app.vision.capture_reference()

    def steps(seconds):
        t_end = time.monotonic() + seconds
        while time.monotonic() < t_end:
            app._guarded_step(time.monotonic())
            time.sleep(1 / 30)

    try:
        steps(1.5)
        reference = app.vision.reference
        assert reference is not None and not app.display.overlay_on
        for key in (pygame.K_TAB, pygame.K_s, pygame.K_b):
            pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key))
        steps(1.0)
        assert app.display.overlay_on                                   # the overlay is drawn every frame
        assert app.vision.reference is not reference                    # a new blank reference was taken
    finally:
        app.shutdown()
    snaps = sorted((tmp_path / "out" / "snapshots").glob("*"))
    assert [p.name.split("_", 1)[1] for p in snaps] == ["camera.png", "strip.png"]
    assert app.metrics.summary()["errors"] == 0                         # no frame failed, overlay included
