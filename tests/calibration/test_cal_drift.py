import cv2
import numpy as np
import pytest

from calibration.drift import check_drift


def _shifted(frame, dx, dy):
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(frame, m, frame.shape[::-1], borderMode=cv2.BORDER_REPLICATE)


def test_unmoved_sheet_passes(pen_dot_run):
    table, _, r = pen_dot_run
    res = check_drift(table.read(), r.calibration, tol_px=3.0)
    assert res.ok and res.offset_px < 1.0, res.message


def test_moved_sheet_warns_with_the_offset(pen_dot_run):
    table, _, r = pen_dot_run
    res = check_drift(_shifted(table.read(), 7.0, -4.0), r.calibration, tol_px=3.0)
    assert not res.ok
    assert res.offset_px == pytest.approx(np.hypot(7, 4), abs=1.0)
    assert "whole sheet moved" in res.message and "recalibrate" in res.message


def test_rotated_sheet_is_told_apart(pen_dot_run):
    table, _, r = pen_dot_run
    frame = table.read()
    m = cv2.getRotationMatrix2D((640, 360), 1.5, 1.0)
    res = check_drift(cv2.warpAffine(frame, m, (1280, 720), borderMode=cv2.BORDER_REPLICATE), r.calibration)
    assert not res.ok and "rotated" in res.message


def test_missing_sheet_warns(pen_dot_run):
    _, _, r = pen_dot_run
    res = check_drift(np.full((720, 1280), 30, np.uint8), r.calibration)
    assert not res.ok and res.offset_px is None and "sheet not found" in res.message
