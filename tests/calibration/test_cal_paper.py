"""The sheet detector against planted truth: synthetic table frames (installation/synthetic.py) under
the uneven IR light of a real table, and the simulated calibration table with its barrel lens.

Bounds come from bench/bench_calibration.py --paper (RESULTS.md): the worst corner over 16 seeds is
0.74 px at 3:1 and 4:1 light, 0.91 px with a hand over the sheet, 0.69 px evenly lit; about 0.5 px of
that is the renderer drawing the sheet half a canvas pixel up and left of its `paper_corners()`.
The global threshold this detector replaced lost the sheet in 13 of 16 such frames at 3:1.
"""
import cv2
import numpy as np
import pytest

from calibration.errors import CalibrationError
from calibration.paper import detect_paper, flatten_illumination
from installation.synthetic import SyntheticParams, SyntheticTable, doodle, draw_polylines

SEEDS = range(6)
UNEVEN_PX = 1.5          # measured worst 0.74 px (0.91 px with a hand)
EVEN_PX = 1.0            # measured worst 0.69 px; the global threshold had 1.64 px


def table(seed: int, light_ratio: float, vignette: float = 0.3) -> SyntheticTable:
    return SyntheticTable(SyntheticParams(seed=seed, light_ratio=light_ratio, vignette=vignette, realtime=False))


def drawn(t: SyntheticTable, seed: int) -> np.ndarray:
    """Ink coverage of a doodle plus a stroke running off the sheet's top edge."""
    ink = np.zeros((t.p.canvas, t.p.canvas), np.uint8)
    off_edge = np.array([[0.4, 0.3], [0.45, -0.1]])
    draw_polylines(ink, doodle(np.random.default_rng(seed)) + [off_edge], t.p.pen_width * t.p.canvas, True)
    return ink


def blank(t: SyntheticTable) -> np.ndarray:
    return np.zeros((t.p.canvas, t.p.canvas), np.uint8)


def worst_corner_px(t: SyntheticTable, frame: np.ndarray) -> float:
    return float(np.linalg.norm(detect_paper(frame) - t.paper_corners(), axis=1).max())


def sheet_masks(t: SyntheticTable, shape) -> tuple[np.ndarray, np.ndarray]:
    """(inside the sheet, on the table) with 7 px kept clear of the edge."""
    m = np.zeros(shape, np.uint8)
    cv2.fillPoly(m, [np.round(t.paper_corners()).astype(np.int32)], 1)
    k = np.ones((15, 15), np.uint8)
    return cv2.erode(m, k).astype(bool), ~cv2.dilate(m, k).astype(bool)


def test_the_test_frames_defeat_a_global_threshold():
    """Why these frames are hard: at 3:1 with vignetting the dim corner of the sheet is barely brighter
    than the bright part of the table (at 4:1 it is darker), and Otsu's one threshold for the whole
    frame, which the detector used to take, leaves a part of the sheet on the table's side."""
    for seed in SEEDS:
        t = table(seed, 3.0)
        frame = cv2.GaussianBlur(t.renderer.render(blank(t)), (0, 0), 2.0)
        paper, _ = sheet_masks(t, frame.shape)
        otsu, _ = cv2.threshold(frame, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
        assert (frame[paper] <= otsu).mean() > 0.02, seed          # measured 4-17 % of the sheet


@pytest.mark.parametrize("light_ratio", [3.0, 4.0])
@pytest.mark.parametrize("seed", SEEDS)
def test_sheet_found_under_uneven_light(seed, light_ratio):
    t = table(seed, light_ratio)
    assert worst_corner_px(t, t.renderer.render(blank(t))) <= UNEVEN_PX
    assert worst_corner_px(t, t.renderer.render(drawn(t, seed))) <= UNEVEN_PX


@pytest.mark.parametrize("seed", SEEDS)
def test_strokes_and_a_hand_over_the_sheet(seed):
    """The hand's shadow darkens paper and table alike, so the edge under it is still found; where it
    bites a corner off the bright region, the two sides beside it still meet at the true corner."""
    t = table(seed, 3.0)
    tip = np.random.default_rng(seed).uniform(0.6, 0.95, 2)      # the hand reaches over the bottom-right corner
    frame = t.renderer.render(drawn(t, seed), hand=t._hand_at(tuple(tip)))
    assert worst_corner_px(t, frame) <= UNEVEN_PX


@pytest.mark.parametrize("seed", SEEDS)
def test_evenly_lit_sheet_stays_accurate(seed):
    t = table(seed, 1.0, vignette=0.0)
    assert worst_corner_px(t, t.renderer.render(blank(t))) <= EVEN_PX
    assert worst_corner_px(t, t.renderer.render(drawn(t, seed))) <= EVEN_PX


def test_flattening_makes_the_sheet_uniformly_brighter_than_the_table():
    t = table(1, 4.0)
    frame = t.renderer.render(blank(t))
    paper, bare = sheet_masks(t, frame.shape)
    flat = cv2.GaussianBlur(flatten_illumination(frame), (0, 0), 2.0)
    assert np.percentile(flat[paper], 1) > 2.0 * np.percentile(flat[bare], 99)


@pytest.mark.parametrize("light_ratio", [1.0, 3.0, 4.0])
def test_bare_table_raises(light_ratio):
    """No sheet, only the table under uneven light: the flattened frame has no two classes (the global
    threshold used to cut a bright patch of table out and call it the sheet)."""
    for seed in range(3):
        r = table(seed, light_ratio).renderer
        frame = np.clip(r.illumination * r.p.table_reflectance + r._noise(), 0, 255).astype(np.uint8)
        with pytest.raises(CalibrationError, match="no sheet found"):
            detect_paper(frame)


def test_featureless_frame_raises():
    with pytest.raises(CalibrationError, match="almost no contrast"):
        detect_paper(np.full((480, 640), 40, np.uint8))


def test_simulated_table_with_its_lens(pen_dot_run):
    """The calibration's own simulated table: barrel lens (the fit's division model), A3 sheet."""
    tbl, _, r = pen_dot_run
    w, h = tbl.p.paper_mm
    truth = tbl.truth.mm_to_raw([[0, 0], [w, 0], [w, h], [0, h]])
    found = detect_paper(tbl.read(), r.fit.lens, view=r.fit.map)
    d = np.linalg.norm(found[:, None] - truth[None], axis=2).min(1)     # each found corner to its nearest
    assert d.max() <= 1.0, d                                            # measured 0.34 px (seed 0)
