"""The boot drift check in the running table: installation/app.py calls calibration.drift.check_drift
on the first camera frame when a calibration FILE is configured.

The synthetic table keeps its default lighting (a 3:1 IR gradient across the sheet and vignetting, like
a real under-table LED array): the sheet detector behind the check flattens the illumination first
and finds this sheet within ~0.8 px (first test; tests/calibration/test_cal_paper.py has more).
The model is the IdentityBundle test double, so inferences and projected frames are cheap."""
from __future__ import annotations

import json
import re
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from loguru import logger

import installation.app as app_module
from calibration.paper import detect_paper
from calibration.store import identity_calibration, save_calibration
from common.paths import REPO_ROOT
from hardware.profiles import load_profile
from installation.app import TableApp, build_source
from installation.config import load_table_config
from installation.metrics import REQUIRED_KEYS
from installation.synthetic import SyntheticParams, SyntheticTable
from table_fakes import IdentityBundle
from table_helpers import write_config

S = 32
SCENE = {"width": 320, "height": 240, "canvas": 256, "seed": 1, "idle_s": 0.3, "hold_s": 2.0,
         "pass_prob": 0.0, "shift_prob": 0.0}
DISPLAY = (480, 270)


def scene_table() -> SyntheticTable:
    return SyntheticTable(SyntheticParams(**SCENE))


def calibration_file(tmp_path: Path, move=None) -> Path:
    """A calibration file holding the synthetic sheet's true corners; `move` = {corner index: (dx, dy)}
    stores some of them elsewhere, as if the sheet had lain there at calibration."""
    corners = scene_table().paper_corners()
    for i, d in (move or {}).items():
        corners[i] += d
    path = tmp_path / "calibration.yaml"
    save_calibration(path, identity_calibration((SCENE["width"], SCENE["height"]), DISPLAY, corners.tolist()))
    return path


def make_app(tmp_path: Path, calibration: Path | None, source: dict | None = None, **sections) -> TableApp:
    cfg = load_table_config(write_config(
        tmp_path / "table.yaml", Path("unused-model.pt"), calibration=None if calibration is None else str(calibration),
        source={"synthetic": SCENE, **(source or {})}, display={"size": list(DISPLAY), "fps": 30, "overlay": True},
        attract={"enabled": False}, **sections))
    hw = load_profile(REPO_ROOT / "hardware/profiles/default.yaml")
    return TableApp(cfg, IdentityBundle(S, 256), build_source(cfg, hw.camera), hw, headless=True,
                    metrics_out=tmp_path / "metrics.json")


class Spy:
    """Counts the app's calls of check_drift and passes them to the real one."""

    def __init__(self, monkeypatch):
        self.results = []
        self.real = app_module.check_drift
        monkeypatch.setattr(app_module, "check_drift", self)

    def __call__(self, *args, **kwargs):
        r = self.real(*args, **kwargs)
        self.results.append(r)
        return r


def run_until(app: TableApp, done, limit_s: float = 30.0) -> None:
    """Run the table until done() holds (polled from a watcher thread) or limit_s passes; the
    assertions come after run() returned, when the reader and worker threads have stopped."""
    def watch():
        t_end = time.monotonic() + limit_s
        while time.monotonic() < t_end and not app.quit_requested:
            if done():
                app.request_quit()
                return
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    app.run(limit_s)
    watcher.join(5.0)


def keeps_drawing(app: TableApp, after: dict):
    """done(): the check has an outcome, then the table went on: RUN, new inferences, 60 more frames shown."""
    def done():
        if app.metrics.value("drift_check") in (None, "waiting"):
            return False
        if not after:
            after.update(presented=app.metrics.get("frames_presented"), inferences=app.metrics.get("inferences"))
        return (app.state.value == "RUN" and app.blender.has_result
                and app.metrics.get("inferences") >= after["inferences"] + 2
                and app.metrics.get("frames_presented") >= after["presented"] + 60)
    return done


@pytest.fixture
def warnings():
    lines: list[str] = []
    sink = logger.add(lambda msg: lines.append(str(msg)), level="WARNING")
    yield lines
    logger.remove(sink)


def test_the_sheet_detector_finds_the_synthetic_sheet():
    """The check is only as good as detect_paper on these frames: first (blank) frames of 4 seeds."""
    assert SyntheticParams().light_ratio == 3.0 and SyntheticParams().vignette > 0     # uneven, as on a real table
    for seed in range(4):
        table = SyntheticTable(SyntheticParams(**{**SCENE, "seed": seed, "realtime": False}))
        table.open()
        found = detect_paper(table.read(0.1).image)
        err = np.linalg.norm(found - table.paper_corners(), axis=1)
        assert err.max() < 1.5, (seed, err)


def test_sheet_where_it_was_calibrated_passes_quietly(tmp_path, monkeypatch, warnings):
    spy = Spy(monkeypatch)
    app = make_app(tmp_path, calibration_file(tmp_path))
    after: dict = {}
    run_until(app, keeps_drawing(app, after))
    m = app.metrics.summary()
    assert len(spy.results) == 1 and spy.results[0].ok, [r.message for r in spy.results]
    assert m["drift_check"] == "ok" and 0 <= m["drift_px"] < 1.5, m
    assert m["errors"] == 0 and "calibration_drift" not in m["errors_by_kind"]
    assert not [w for w in warnings if "drift" in w or "sheet" in w], warnings
    assert any(line.startswith("drift check: sheet corners within") for line in app._lines())
    assert after and app.metrics.get("frames_presented") >= after["presented"] + 60


def test_moved_sheet_warns_names_the_corner_and_the_table_keeps_drawing(tmp_path, monkeypatch, warnings):
    spy = Spy(monkeypatch)
    app = make_app(tmp_path, calibration_file(tmp_path, move={1: (12.0, -9.0)}))     # top-right, 15 px
    after: dict = {}
    run_until(app, keeps_drawing(app, after))
    assert len(spy.results) == 1 and not spy.results[0].ok
    drift = [w for w in warnings if "drift check" in w]
    assert len(drift) == 1 and "WARNING" in drift[0], warnings
    hit = re.search(r"the sheet's (\S+) corner is ([\d.]+) px from where it was at calibration "
                    r"\(tolerance 4\.0 px\)", drift[0])
    assert hit and hit[1] == "top-right" and abs(float(hit[2]) - 15.0) < 3.0, drift[0]
    assert "recalibrate" in drift[0]
    # the metrics JSON written at shutdown
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert all(k in m for k in REQUIRED_KEYS)
    assert m["drift_check"] == "moved" and abs(m["drift_px"] - 15.0) < 3.0
    assert m["errors_by_kind"] == {"calibration_drift": 1} and m["errors"] == 1
    # on the operator overlay, in full (it was drawn: display.overlay is on and no frame failed)
    text = "\n".join(app._lines())
    assert "WARNING drift check: the sheet's top-right corner" in text and "recalibrate" in text
    # not stopped: after the warning the loop ran, inferred and presented; the answer reaches the projector
    assert after and app.metrics.get("inferences") >= after["inferences"] + 2
    assert app.metrics.get("frames_presented") >= after["presented"] + 60
    assert "RUN" in m["states"] and app.projected is not None and app.projected.max() > 0


def test_the_tolerance_comes_from_the_table_config(tmp_path, monkeypatch, warnings):
    spy = Spy(monkeypatch)
    app = make_app(tmp_path, calibration_file(tmp_path, move={1: (12.0, -9.0)}), drift_tol_px=20.0)
    run_until(app, lambda: app.metrics.value("drift_check") not in (None, "waiting"))
    assert len(spy.results) == 1 and spy.results[0].ok and "tolerance 20.0 px" in spy.results[0].message
    assert app.metrics.summary()["drift_check"] == "ok" and not [w for w in warnings if "drift" in w]


def test_no_calibration_file_no_check(tmp_path, monkeypatch, warnings):
    spy = Spy(monkeypatch)
    app = make_app(tmp_path, None)
    run_until(app, lambda: app.state.value == "RUN" and app.metrics.get("inferences") >= 2
              and app.metrics.get("frames_presented") >= 60)
    m = app.metrics.summary()
    assert spy.results == [] and m["inferences"] >= 2
    assert m["drift_check"] == "off" and m["drift_px"] is None and m["errors"] == 0
    assert not [w for w in warnings if "drift" in w or "sheet" in w or "calibration" in w], warnings
    assert "drift check off (no calibration file)" in app._lines()


def test_no_frame_at_boot_skips_the_check_and_says_so(tmp_path, monkeypatch, warnings):
    """The camera stalls from the start: the check gives up after DRIFT_WAIT_S (shortened here) without
    holding the loop, and does not run late on a frame that comes afterwards."""
    monkeypatch.setattr(app_module, "DRIFT_WAIT_S", 0.3)
    spy = Spy(monkeypatch)
    app = make_app(tmp_path, calibration_file(tmp_path),
                   source={"faults": [{"kind": "stall", "start_s": 0.0, "duration_s": 1.5}]})
    run_until(app, lambda: app.metrics.value("drift_check") == "skipped" and app.state.value == "RUN"
              and app.metrics.get("frames_captured") >= 10)
    m = app.metrics.summary()
    assert m["drift_check"] == "skipped" and spy.results == [] and "calibration_drift" not in m["errors_by_kind"]
    assert len([w for w in warnings if "drift check skipped" in w]) == 1, warnings
    assert m["frames_captured"] >= 10 and "CAMERA_LOST" in m["states"] and m["states"][-1] == "RUN"
    assert any(line.startswith("drift check skipped") for line in app._lines())
