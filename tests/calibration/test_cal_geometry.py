import numpy as np
import pytest

from calibration.geometry import Lens, apply_homography, flatness, order_corners


def test_lens_distort_inverts_undistort():
    lens = Lens.for_image(1280, 720, k=-0.08)
    rng = np.random.default_rng(1)
    raw = rng.uniform([0, 0], [1280, 720], (500, 2))
    back = lens.distort(lens.undistort(raw))
    assert np.abs(back - raw).max() < 1e-9
    # barrel (k < 0): undistorting pushes points away from the centre, more at the edge
    r_raw = np.linalg.norm(raw - lens.center, axis=1)
    r_ideal = np.linalg.norm(lens.undistort(raw) - lens.center, axis=1)
    assert (r_ideal >= r_raw - 1e-9).all()
    assert r_ideal.max() - r_raw.max() > 20


def test_zero_lens_is_identity():
    lens = Lens.for_image(640, 480)
    p = np.array([[1.5, 2.5], [600, 10]])
    assert np.array_equal(lens.undistort(p), p) and np.array_equal(lens.distort(p), p)


def test_lens_rejects_bad_values():
    with pytest.raises(ValueError, match="scale"):
        Lens((0, 0), 0.0, 0.0)
    with pytest.raises(ValueError, match="k"):
        Lens((0, 0), 1.0, float("nan"))


def test_order_corners_follows_the_view_not_the_camera():
    square = np.array([[0, 0], [10, 0], [10, 10], [0, 10]], float)
    shuffled = square[[2, 0, 3, 1]]
    assert np.array_equal(order_corners(shuffled), square)
    # a camera seeing the sheet mirrored: ordered as the projector (the visitor) sees it
    mirror = np.array([[-1, 0, 10], [0, 1, 0], [0, 0, 1]], float)
    ordered = order_corners(shuffled, view=lambda p: apply_homography(mirror, p))
    assert np.array_equal(ordered, square[[1, 0, 3, 2]])


def test_flatness_detects_collinear_points():
    line = np.c_[np.linspace(0, 100, 9), np.linspace(0, 50, 9)]
    assert flatness(line) < 1e-12
    grid = np.stack(np.meshgrid(np.arange(3), np.arange(3)), -1).reshape(-1, 2).astype(float)
    assert flatness(grid) == pytest.approx(1.0)
