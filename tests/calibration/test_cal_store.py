import datetime as dt
import os

import numpy as np
import pytest
import yaml

from calibration.geometry import Lens, apply_homography
from calibration.store import (CALIBRATION_VERSION, Calibration, identity_calibration, load_calibration,
                               save_calibration)
from common.config import ConfigError, to_dict


def sample(k=-0.05, shift=0.0) -> Calibration:
    h = np.array([[-1.6, 0.04, 2000.0 + shift], [0.02, 1.55, -30.0], [1e-5, -2e-5, 1.0]])
    return Calibration(version=CALIBRATION_VERSION, camera_size=(1280, 720), projector_size=(1920, 1080),
                       cam_to_proj=h.tolist(), paper_corners_cam=[[1030, 70], [250, 80], [220, 650], [1070, 640]],
                       method="pen-dot", created="2026-01-01T00:00:00", rms_px=0.6, max_px=1.1, loo_rms_px=0.9,
                       n_points=2, residuals_px=[0.5, 0.7], points_cam=[[1.0, 2.0], [3.0, 4.0]],
                       points_proj=[[5.0, 6.0], [7.0, 8.0]], lens=Lens.for_image(1280, 720, k),
                       paper_mm=(420.0, 297.0))


def test_yaml_round_trip_is_plain_safe_yaml(tmp_path):
    path = tmp_path / "calibration.yaml"
    cal = sample()
    save_calibration(path, cal)
    text = path.read_text()
    assert "!!" not in text and "opencv" not in text        # no python/OpenCV tags
    data = yaml.safe_load(text)
    assert data["version"] == CALIBRATION_VERSION
    assert data["cam_to_proj"] == cal.cam_to_proj and isinstance(data["cam_to_proj"][0], list)
    assert data["lens"]["k"] == -0.05
    back = load_calibration(path)
    assert back == cal
    pts = np.array([[300.0, 200.0], [900.0, 500.0]])
    assert np.allclose(back.cam_to_projector(pts), cal.cam_to_projector(pts))


def test_backup_keeps_the_previous_file_and_write_leaves_no_temp(tmp_path):
    path = tmp_path / "calibration.yaml"
    assert save_calibration(path, sample(shift=0.0)) is None
    old = path.read_bytes()
    backup = save_calibration(path, sample(shift=5.0))
    assert backup is not None and backup.read_bytes() == old
    stamp = dt.datetime.now().strftime("%Y%m%d")
    assert backup.name.startswith(f"calibration.{stamp}") and backup.name.endswith(".bak.yaml")
    assert load_calibration(path).H[0, 2] == 2005.0
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([path.name, backup.name])   # no *.tmp left


def test_a_calibration_that_cannot_be_read_back_is_never_written(tmp_path):
    path = tmp_path / "calibration.yaml"
    save_calibration(path, sample())
    before = path.read_bytes()
    bad = sample()
    bad.rms_px = np.float64(0.5)          # numpy scalars are not plain YAML: refused before touching the file
    with pytest.raises(yaml.representer.RepresenterError):
        save_calibration(path, bad)
    assert path.read_bytes() == before
    assert len(os.listdir(tmp_path)) == 1


def test_version_mismatch_is_a_clear_error(tmp_path):
    path = tmp_path / "calibration.yaml"
    save_calibration(path, sample())
    data = yaml.safe_load(path.read_text())
    data["version"] = CALIBRATION_VERSION + 1
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match=r"calibration.yaml: key 'version': calibration version 2 is not "
                                          r"supported.*recalibrate"):
        load_calibration(path)


def test_unknown_key_and_bad_matrix_name_the_problem(tmp_path):
    path = tmp_path / "c.yaml"
    data = to_dict(sample())
    data["homography"] = [[1, 0, 0]]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="key 'homography': unknown key"):
        load_calibration(path)
    del data["homography"]
    data["cam_to_proj"] = [[1, 0, 0], [0, 1, 0], [0, 0, 0]]
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(ConfigError, match="invertible 3x3"):
        load_calibration(path)
    with pytest.raises(ConfigError, match="not found"):
        load_calibration(tmp_path / "missing.yaml")


def test_paper_maps_and_paper_to_projector_agree_with_cam_to_projector():
    """The runtime's two halves: crop (remap grids, lens included) then draw (paper_to_projector)
    must compose to the calibrated camera -> projector map."""
    cal = sample(k=-0.08)
    side = 256
    mx, my = cal.cam_to_paper_maps(side)
    uv = np.array([[0, 0], [255, 0], [128, 77], [13, 200], [255, 255]])
    raw = np.c_[mx[uv[:, 1], uv[:, 0]], my[uv[:, 1], uv[:, 0]]]
    via_paper = apply_homography(cal.paper_to_projector(side), uv.astype(float))
    assert np.abs(via_paper - cal.cam_to_projector(raw)).max() < 0.01
    assert np.allclose(raw[0], cal.paper_corners_cam[0], atol=1e-3)     # paper (0, 0) = the TL corner


def test_identity_calibration_maps_frame_to_framebuffer():
    cal = identity_calibration((1280, 720), (1920, 1080))
    assert np.allclose(cal.cam_to_projector([[1280, 720]]), [[1920, 1080]])
    assert np.allclose(apply_homography(cal.paper_to_projector(100), [[100, 100]]), [[1920, 1080]])
