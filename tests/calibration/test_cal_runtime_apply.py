"""Acceptance 3: the saved calibration, applied the way the runtime applies it, puts the drawing
back on the paper's strokes.

Strokes are drawn on the simulated sheet (table millimetres), filmed through the true camera, the
paper is cropped out of the frame with the saved calibration, the ink pixels are mapped with
`paper_to_projector`, and they must land on the strokes' true projector positions.
"""
import cv2
import numpy as np
import pytest

from calibration.geometry import apply_homography
from calibration.store import identity_calibration, load_calibration, save_calibration
from tests.calibration.helpers import simulate_pen_dot

SIDE = 1024
STROKES_MM = [np.array([[40, 40], [380, 60], [370, 250], [60, 240], [120, 120]], float),
              np.array([[210, 20], [215, 280]], float),
              np.c_[np.linspace(30, 390, 40), 150 + 60 * np.sin(np.linspace(0, 6, 40))]]
WIDTH_MM = 1.2


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    table, _, result = simulate_pen_dot(8)
    path = tmp_path_factory.mktemp("cal") / "calibration.yaml"
    save_calibration(path, result.calibration)
    table.clear_ink()
    for s in STROKES_MM:
        table.add_stroke(s, WIDTH_MM, 0.8)
    return table, load_calibration(path), table.read()


BORDER_PX = 10       # the crop's outermost pixels sample the sheet's edge itself (half table), which is
                     # no ink; the runtime ignores a 3 % border likewise (VisionParams.border_frac)


def _ink_uv(crop: np.ndarray) -> np.ndarray:
    paper = cv2.GaussianBlur(crop, (0, 0), 12).astype(np.float32)
    dark = crop.astype(np.float32) < 0.6 * paper
    dark[:BORDER_PX] = dark[-BORDER_PX:] = False
    dark[:, :BORDER_PX] = dark[:, -BORDER_PX:] = False
    ys, xs = np.nonzero(dark)
    return np.c_[xs, ys].astype(np.float64)


def _dist_to_strokes(pts: np.ndarray, table) -> np.ndarray:
    d = np.full(len(pts), np.inf)
    for s in STROKES_MM:
        p = apply_homography(table.truth.mm_to_proj, s)
        for a, b in zip(p[:-1], p[1:]):
            t = np.clip(((pts - a) @ (b - a)) / ((b - a) @ (b - a)), 0, 1)
            d = np.minimum(d, np.linalg.norm(pts - a - t[:, None] * (b - a), axis=1))
    return d


def _landing_error(table, cal, frame, crop) -> tuple[np.ndarray, float]:
    proj = apply_homography(cal.paper_to_projector(SIDE), _ink_uv(crop))
    half = 0.5 * WIDTH_MM * table.truth.mm_to_proj[0, 0] / abs(table.truth.mm_to_proj[2, 2])
    return _dist_to_strokes(proj, table), half


def test_projected_ink_lands_on_the_strokes(scene):
    table, cal, frame = scene
    mx, my = cal.cam_to_paper_maps(SIDE)                 # the runtime's crop, lens included
    crop = cv2.remap(frame, mx, my, cv2.INTER_LINEAR)
    d, half = _landing_error(table, cal, frame, crop)
    assert len(d) > 2000
    # ink pixels lie within the stroke's half width plus 1 px (measured: ~0.1 px beyond it)
    assert np.percentile(d, 99.5) <= half + 1.0, (np.percentile(d, 99.5), half)
    # and the strokes are centred: a centred stroke has mean distance half / 2 (measured: 0.87 px)
    assert d.mean() <= 0.5 * half + 0.5, (d.mean(), half)


def test_a_homography_only_crop_misses_by_pixels(scene):
    """Why the runtime must crop with `cam_to_paper_maps`: `cam_to_paper` is a 3x3 homography and
    cannot follow the lens; the same strokes land ~6 px off on average."""
    table, cal, frame = scene
    crop = cv2.warpPerspective(frame, cal.cam_to_paper(SIDE), (SIDE, SIDE))
    d, half = _landing_error(table, cal, frame, crop)
    assert d.mean() > 0.5 * half + 3.0


def test_an_uncalibrated_table_misses_the_strokes(scene):
    """The same measurement fails without the calibration: the test can tell."""
    table, cal, frame = scene
    ident = identity_calibration(cal.camera_size, cal.projector_size)
    crop = cv2.warpPerspective(frame, ident.cam_to_paper(SIDE), (SIDE, SIDE))
    d, half = _landing_error(table, ident, frame, crop)
    assert np.percentile(d, 99.5) > 10 * half
