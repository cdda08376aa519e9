import numpy as np
import pytest

from calibration.errors import CalibrationError
from calibration.fit import coverage, fit_camera_to_target
from calibration.geometry import Lens, apply_homography

H_TRUE = np.array([[-1.62, 0.05, 2050.0], [0.03, 1.58, -40.0], [2e-5, -1e-5, 1.0]])   # mirrored, keystoned
LENS_TRUE = Lens.for_image(1280, 720, k=-0.06)


def planted(n=5, noise=0.0, seed=0):
    """A grid of projector targets and where a camera with LENS_TRUE sees them (raw px)."""
    rng = np.random.default_rng(seed)
    xs, ys = np.linspace(300, 1600, n), np.linspace(120, 960, n)
    target = np.stack(np.meshgrid(xs, ys), -1).reshape(-1, 2)
    ideal = apply_homography(np.linalg.inv(H_TRUE), target)
    cam = LENS_TRUE.distort(ideal) + rng.normal(0, noise, ideal.shape)
    return cam, target


def test_recovers_planted_homography_and_lens():
    cam, target = planted(5, noise=0.05)
    fit = fit_camera_to_target(cam, target, (1280, 720))
    assert fit.lens.k == pytest.approx(LENS_TRUE.k, abs=0.004)
    rng = np.random.default_rng(1)
    probe_ideal = apply_homography(np.linalg.inv(H_TRUE), rng.uniform([350, 150], [1550, 930], (200, 2)))
    probe_raw = LENS_TRUE.distort(probe_ideal)
    err = np.linalg.norm(fit.map(probe_raw) - apply_homography(H_TRUE, probe_ideal), axis=1)
    assert err.max() < 0.5
    assert fit.inliers.all() and fit.rms < 0.3
    assert np.isfinite(fit.loo).all() and fit.loo_rms >= fit.rms    # error between points >= at points


def test_without_the_lens_model_the_same_points_fit_worse():
    """Proves the lens term is doing work: a pure homography leaves pixels of error."""
    cam, target = planted(5)
    with_lens = fit_camera_to_target(cam, target, (1280, 720))
    pure = fit_camera_to_target(cam, target, (1280, 720), fit_lens=False)
    assert pure.rms > 1.0 > 10 * with_lens.rms


def test_misplaced_dot_is_an_outlier_named_by_label():
    cam, target = planted(4, noise=0.05)
    cam[6] += [9.0, -7.0]                                 # marked ~15 projector px beside its crosshair
    labels = [f"dot {i + 1}" for i in range(len(cam))]
    fit = fit_camera_to_target(cam, target, (1280, 720), labels=labels)
    assert list(np.flatnonzero(~fit.inliers)) == [6]
    assert fit.rms < 0.5


def test_too_many_bad_points_says_which_to_redo():
    cam, target = planted(4, noise=0.05)
    for i in (1, 5, 9, 14):
        cam[i] += [12.0, 9.0]
    with pytest.raises(CalibrationError, match=r"4 of 16 points do not fit") as e:
        fit_camera_to_target(cam, target, (1280, 720))
    assert e.value.redo == [1, 5, 9, 14]


def test_fewer_than_four_points():
    cam, target = planted(3)
    with pytest.raises(CalibrationError, match="only 3 point.*at least 4"):
        fit_camera_to_target(cam[:3], target[:3], (1280, 720))


def test_collinear_points():
    cam, target = planted(5)
    row = slice(10, 15)                                   # one row of the grid
    with pytest.raises(CalibrationError, match="on one line"):
        fit_camera_to_target(cam[row], target[row], (1280, 720))


def test_same_dot_for_two_crosshairs():
    cam, target = planted(3)
    cam[4] = cam[3] + 0.2
    with pytest.raises(CalibrationError, match="counted twice") as e:
        fit_camera_to_target(cam, target, (1280, 720))
    assert e.value.redo == [3, 4]


def test_coverage_is_the_share_of_the_sheet_inside_the_hull():
    sheet = np.array([[0, 0], [100, 0], [100, 50], [0, 50]], float)
    inner = np.array([[0, 0], [50, 0], [50, 50], [0, 50]], float)
    assert coverage(inner, sheet) == pytest.approx(0.5)
    beyond = sheet * 2 - 10                               # points beyond the sheet count only up to it
    assert coverage(beyond, sheet) == pytest.approx(1.0)
