from pathlib import Path

import pytest
import yaml

from common.config import ConfigError
from common.paths import REPO_ROOT
from hardware.profiles import HardwareProfile, load_profile

PROFILES = sorted((REPO_ROOT / "hardware" / "profiles").glob("*.yaml"))


def _write(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "profile.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _default() -> dict:
    return yaml.safe_load((REPO_ROOT / "hardware/profiles/default.yaml").read_text())


@pytest.mark.parametrize("path", PROFILES, ids=[p.name for p in PROFILES])
def test_shipped_profiles_load(path):
    p = load_profile(path)
    assert isinstance(p, HardwareProfile)
    x, y, w, h = p.projector_roi()
    assert x + w <= p.display.width and y + h <= p.display.height


def test_default_profile_values():
    p = load_profile(REPO_ROOT / "hardware/profiles/default.yaml")
    assert (p.camera.width, p.camera.height, p.camera.fps, p.camera.fourcc) == (1280, 720, 30, "MJPG")
    assert (p.display.width, p.display.height) == (1920, 1080)
    assert p.table.paper_mm == (420.0, 297.0)
    assert p.projector_roi() == (0, 0, 1920, 1080)
    assert not p.camera.is_by_id


def test_v4l2_controls_order_and_values():
    p = load_profile(REPO_ROOT / "hardware/profiles/by-id-example.yaml")
    assert p.camera.is_by_id
    ctrls = p.camera.v4l2_controls()
    # manual exposure must be selected before the exposure time, or the driver refuses it
    assert list(ctrls)[:3] == ["auto_exposure", "exposure_time_absolute", "gain"]
    assert ctrls["auto_exposure"] == 1 and ctrls["exposure_time_absolute"] == 120 and ctrls["gain"] == 8
    assert ctrls["power_line_frequency"] == 1


@pytest.mark.parametrize("section, key, value, message", [
    ("camera", "device", "video0", r"key 'camera': camera device must be a /dev/v4l/by-id/\.\.\. path"),
    ("camera", "fourcc", "H264", r"key 'camera.fourcc': expected one of \['MJPG', 'YUYV', 'GREY', 'Y16'\]"),
    ("camera", "width", -5, r"camera width/height/fps must be positive"),
    ("camera", "fps", "30", r"key 'camera.fps': expected an integer"),
    ("camera", "exposure", -1.0, r"exposure must be positive"),
    ("camera", "auto_exposure", True, r"auto_exposure is true: the driver would ignore it"),
    ("camera", "controls", {"Exposure Time": 3}, r"not a V4L2 control name"),
    ("camera", "controls", {"gain": 3}, r"has its own key: set camera.gain"),
    ("camera", "controls", {"exposure_auto": 1}, r"has its own key: set camera.auto_exposure"),
    ("camera", "buffer_size", 0, r"buffer_size must be 1..8"),
    ("camera", "exposre", 100, r"key 'camera.exposre': unknown key"),
    ("display", "index", -1, r"display index must be >= 0"),
    ("display", "name", " ", r"display name must be a non-empty string"),
    ("display", "height", 0, r"display size must be positive"),
    ("table", "paper_mm", [420.0], r"key 'table.paper_mm': expected 2 items"),
    ("table", "paper_mm", [420.0, -1], r"paper_mm must be positive"),
    ("table", "roi", [0, 0, 2000, 720], r"table.roi \[0, 0, 2000, 720\] reaches beyond the camera frame \(1280x720\)"),
    ("table", "roi", [0, 0, 0, 720], r"table.roi must be \[x, y, w, h\]"),
    ("table", "projector_roi", [100, 100, 1900, 900], r"table.projector_roi .* beyond the display \(1920x1080\)"),
])
def test_invalid_values_name_file_and_key(tmp_path, section, key, value, message):
    data = _default()
    data[section][key] = value
    with pytest.raises(ConfigError, match=message) as e:
        load_profile(_write(tmp_path, data))
    assert "profile.yaml" in str(e.value)


def test_missing_file_and_unknown_section(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_profile(tmp_path / "nope.yaml")
    data = _default()
    data["projector"] = {}
    with pytest.raises(ConfigError, match="key 'projector': unknown key"):
        load_profile(_write(tmp_path, data))
