"""Acceptance 4: a bad config exits with code 2 and a message naming the key or the file."""
from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from calibration.store import identity_calibration, save_calibration
from common.config import ConfigError
from common.paths import REPO_ROOT
from table_helpers import write_config
from installation.config import TableConfig, load_table_config
from run_table import main


def run_main(capsys, *argv) -> tuple[int, str]:
    rc = main([str(a) for a in argv])
    return rc, capsys.readouterr().err


def edit(path, **changes):
    data = yaml.safe_load(path.read_text())
    for dotted, value in changes.items():
        node = data
        *parents, leaf = dotted.split("__")
        for k in parents:
            node = node.setdefault(k, {})
        node[leaf] = value
    path.write_text(yaml.safe_dump(data))
    return path


@pytest.fixture
def cfg_path(tmp_path, tiny_model):
    return write_config(tmp_path / "table.yaml", tiny_model)


def test_shipped_configs_parse(tmp_path):
    demo = load_table_config(REPO_ROOT / "configs/demo.yaml")
    assert isinstance(demo, TableConfig) and demo.source.kind == "synthetic"
    with pytest.raises(ConfigError) as e:         # the kiosk config wants a calibration first
        load_table_config(REPO_ROOT / "configs/table.yaml")
    assert e.value.key == "calibration" and "python -m calibration" in str(e.value)
    # ... and is complete once the calibration tool has written its file
    cal = tmp_path / "calibration.yaml"
    save_calibration(cal, identity_calibration((1280, 720), (1920, 1080)))
    data = yaml.safe_load((REPO_ROOT / "configs/table.yaml").read_text())
    data["calibration"] = str(cal)
    (tmp_path / "table.yaml").write_text(yaml.safe_dump(data))
    table = load_table_config(tmp_path / "table.yaml")
    assert table.source.kind == "camera" and table.source.reader.lost_after_s <= 2.0 and table.drift_tol_px == 4.0


def test_unknown_key_names_the_dotted_key(capsys, cfg_path):
    rc, err = run_main(capsys, "--config", edit(cfg_path, vision__treshold=0.5), "--headless")
    assert rc == 2 and "vision.treshold" in err and "unknown key" in err and str(cfg_path) in err


def test_wrong_type_names_the_key_and_expectation(capsys, cfg_path):
    rc, err = run_main(capsys, "--config", edit(cfg_path, scheduler__min_interval_s="fast"), "--headless")
    assert rc == 2 and "scheduler.min_interval_s" in err and "expected a number" in err


def test_out_of_range_value_is_refused(capsys, cfg_path):
    rc, err = run_main(capsys, "--config", edit(cfg_path, blend__mode="morph"), "--headless")
    assert rc == 2 and "blend.mode" in err and "crossfade" in err


@pytest.mark.parametrize("value", [0, -2.5])
def test_drift_tolerance_must_be_positive(capsys, cfg_path, value):
    rc, err = run_main(capsys, "--config", edit(cfg_path, drift_tol_px=value), "--headless")
    assert rc == 2 and "drift_tol_px" in err and "must be > 0" in err and str(cfg_path) in err


def test_drift_tolerance_defaults_to_4_px(cfg_path):
    assert load_table_config(cfg_path).drift_tol_px == 4.0
    assert load_table_config(edit(cfg_path, drift_tol_px=2)).drift_tol_px == 2.0


@pytest.mark.parametrize("key,value,needle", [
    ("hardware", "/nonexistent/profile.yaml", "/nonexistent/profile.yaml"),
    ("calibration", "/nonexistent/calibration.yaml", "python -m calibration"),
])
def test_missing_referenced_file(capsys, cfg_path, key, value, needle):
    rc, err = run_main(capsys, "--config", edit(cfg_path, **{key: value}), "--headless")
    assert rc == 2 and f"key '{key}'" in err and needle in err


def test_missing_video_for_a_video_source(capsys, cfg_path):
    rc, err = run_main(capsys, "--config", edit(cfg_path, source__kind="video", source__path="/no/such.avi"))
    assert rc == 2 and "source.path" in err and "/no/such.avi" in err


def test_missing_config_file(capsys, tmp_path):
    rc, err = run_main(capsys, "--config", tmp_path / "nope.yaml")
    assert rc == 2 and "nope.yaml" in err and "not found" in err


def test_missing_default_model_says_how_to_get_it(capsys, cfg_path):
    """The shipped default path, missing: the message must tell the technician what to do."""
    if (REPO_ROOT / "weights/default.pt").is_file():
        pytest.skip("weights/default.pt exists in this checkout")
    rc, err = run_main(capsys, "--config", edit(cfg_path, model__path="weights/default.pt"), "--headless")
    assert rc == 2 and "model.path" in err and "weights/default.pt" in err and "restore it" in err


def test_broken_model_file(capsys, cfg_path, tmp_path):
    bad = tmp_path / "broken.pt"
    bad.write_bytes(b"PK\x03\x04 not really a checkpoint")
    rc, err = run_main(capsys, "--config", edit(cfg_path, model__path=str(bad)), "--headless")
    assert rc == 2 and "broken.pt" in err and "cannot be read" in err


def test_the_process_exit_code_is_2(cfg_path):
    """The checker runs the real command line: the exit status itself must be 2."""
    edit(cfg_path, display__fps="thirty")
    p = subprocess.run([sys.executable, "run_table.py", "--config", str(cfg_path), "--headless", "--seconds", "1"],
                       cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and "display.fps" in p.stderr
