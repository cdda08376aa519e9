"""The binarizer and the ink tracker against planted ground truth: real QuickDraw strokes rendered as
the IR camera would see them (illumination falling 3x across the sheet, vignetting, paper texture,
optical blur, sensor noise), hands passing over, new sheets, a nudged sheet."""
from __future__ import annotations

import cv2
import numpy as np
import pytest

from table_helpers import Bench
from installation.frames import Frame
from installation.synthetic import HandPose, SyntheticParams, SyntheticTable, rasterize
from installation.vision import (BinarizeParams, VisionParams, binarize_sketch, downsample_mask, ink_mask,
                                 make_reference, tolerant_iou)

PEN = SyntheticParams().pen_width


def truth_mask(strokes, size=256) -> np.ndarray:
    return rasterize(strokes, size, PEN)


def coverage(strokes, canvas=512) -> np.ndarray:
    return rasterize(strokes, canvas, PEN, antialias=True)


# ----------------------------------------------------------------------------------------------
# the pure binarizer


def test_binarize_sketch_contract():
    blank = np.full((300, 300), 200, np.uint8)
    out = binarize_sketch(blank, 64)
    assert out.shape == (64, 64) and out.dtype == np.float32 and (out == 1).all()
    img = blank.copy()
    cv2.line(img, (20, 150), (280, 150), 40, 3)
    out = binarize_sketch(img, 64)
    assert set(np.unique(out)) == {0.0, 1.0}
    rows = np.where((out == 0).any(axis=1))[0]
    assert rows.min() >= 30 and rows.max() <= 34          # the line at y = 150/300 * 64 = 32
    with pytest.raises(ValueError):
        binarize_sketch(img.astype(np.float32), 64)


def test_thin_stroke_survives_downsampling():
    """A 1 px pen line at 512 px is 1/8 of an output pixel at 64 px: coverage thresholding keeps it."""
    ink = np.zeros((512, 512), bool)
    ink[100:400, 250] = True
    out = downsample_mask(ink, 64, min_coverage=0.1)
    assert (out[13:50, 31] == 0).all()
    assert (out == 0).sum() == 38 or (out == 0).sum() == 37


def test_specks_are_removed_and_dark_blobs_are_not_ink():
    rng = np.random.default_rng(0)
    img = np.full((256, 256), 200, np.uint8)
    for y, x in rng.integers(10, 246, (30, 2)):
        img[y, x] = 60                                        # isolated dark pixels: sensor specks
    cv2.circle(img, (128, 128), 60, 80, -1)                   # a wide soft-edged shadow, not a pen line
    img = cv2.GaussianBlur(img, (0, 0), 6)
    ink = ink_mask(img, BinarizeParams())
    assert ink[128 - 30:128 + 30, 128 - 30:128 + 30].sum() == 0, "the inside of a shadow is not ink"


def test_binarize_sketch_on_flatfielded_quickdraw(qd_drawings):
    """The training path: a rendered QuickDraw sketch (texture, blur, noise, no lighting) -> mask."""
    rng = np.random.default_rng(0)
    ious = []
    for _, strokes in qd_drawings:
        cov = coverage(strokes).astype(np.float32) / 255
        img = 200 * (1 - 0.75 * cov) + rng.normal(0, 3, cov.shape)
        img = cv2.GaussianBlur(img.astype(np.float32), (0, 0), 0.8)
        out = binarize_sketch(np.clip(img, 0, 255).astype(np.uint8), 256)
        ious.append(tolerant_iou(out == 0, truth_mask(strokes), 2))
    assert min(ious) >= 0.9, ious


# ----------------------------------------------------------------------------------------------
# the camera path (acceptance 2)


def test_lighting_really_varies_3x_across_the_sheet():
    """The planted condition of the next test: illumination falls 3x from one side of the paper to the other."""
    b = Bench()
    crop = b.v.crop(b.r.render(b.blank)).astype(np.float32)
    inner = cv2.GaussianBlur(crop, (0, 0), 2)[6:-6, 6:-6]
    assert inner.max() / inner.min() >= 2.7


def test_recovers_quickdraw_ink_under_gradient_light_noise_and_blur(qd_drawings):
    ious = {}
    for i, (name, strokes) in enumerate(qd_drawings):
        if i % 8 == 0:      # three tables: the light falls off in three different directions
            b = Bench(SyntheticParams(width=640, height=480, light_ratio=3.0, noise_sigma=3.0, blur_sigma=0.8,
                                      seed=i))
            b.start()
        b.v.reset_ink()
        res = b.feed(coverage(strokes), n=4)
        ious[name] = tolerant_iou(res.committed, truth_mask(strokes), 2)
        assert res.ink_version >= 1
    worst = min(ious, key=ious.get)
    assert ious[worst] >= 0.9, f"{worst}: IoU {ious[worst]:.3f} (all: {ious})"
    # and the recovered sketch is what the encoder gets, at its resolution
    assert res.sketch.shape == (64, 64) and res.sketch.dtype == np.float32


def test_without_reference_nothing_is_committed():
    b = Bench()
    res = b.feed(b.blank, 5)
    assert not res.ready and res.ink_version == 0 and not res.committed.any()


def _hand_across(b: Bench, i: int, n: int) -> HandPose:
    side, c = b.r.paper_px(), b.r.corners()
    a = i / (n - 1)
    tip = (c[0, 0] - 0.2 * side + a * 1.4 * side, c[0, 1] + (0.2 + 0.5 * a) * side)
    return HandPose(tip, (tip[0] + 0.13 * side, tip[1] + 0.17 * side), 0.1 * side)


def test_a_hand_passing_over_erases_no_ink_and_adds_none(qd_drawings):
    for _, strokes in qd_drawings[:3]:
        b = Bench()
        b.start()
        cov = coverage(strokes)
        before = b.feed(cov, n=6).committed.copy()
        version = b.v.ink_version
        hand_frames = 0
        for i in range(40):
            res = b.feed(cov, hand=_hand_across(b, i, 40))
            hand_frames += res.hand
            assert res.committed[before].all(), "the hand erased ink"
        assert hand_frames >= 25, "the hand was not seen"
        assert res.ink_version == version, "a hand must not count as new ink"
        assert tolerant_iou(res.committed, truth_mask(strokes), 2) >= 0.9


def test_ink_drawn_under_the_hand_waits_for_the_hand_to_leave(qd_drawings):
    """New ink under a resting hand is not committed (it could be the hand's shadow) until it is seen."""
    _, strokes = qd_drawings[0]
    b = Bench()
    b.start()
    side, c = b.r.paper_px(), b.r.corners()
    centre = c.mean(0)
    hand = HandPose((centre[0] - 0.1 * side, centre[1] - 0.1 * side), tuple(centre), 0.25 * side)
    res = b.feed(coverage(strokes), n=10, hand=hand)
    truth = truth_mask(strokes)
    # the mask's rim flickers with noise; well inside it nothing may be committed
    core = cv2.erode(res.hand_mask.astype(np.uint8), np.ones((11, 11), np.uint8)).astype(bool)
    assert res.hand and core.sum() > 1000 and (truth & core).sum() > 50
    assert not (res.committed & core).any()
    res = b.feed(coverage(strokes), n=4)
    assert tolerant_iou(res.committed, truth, 2) >= 0.9


def test_a_new_blank_sheet_clears_the_ink(qd_drawings):
    _, strokes = qd_drawings[1]
    b = Bench()
    b.start()
    res = b.feed(coverage(strokes), n=5)
    assert res.ink_px > 100
    version = res.ink_version
    # the swap: hands over the paper while the sheet is changed, then the blank sheet alone
    events = []
    for i in range(25):
        res = b.feed(None, hand=_hand_across(b, i, 10) if i < 10 else None)
        events += [k for k in ("new_sheet", "paper_shift") if getattr(res, k)]
    assert events == ["new_sheet"]
    assert res.ink_px == 0 and res.ink_version > version and (res.sketch == 1).all()


def test_a_nudged_sheet_moves_the_ink_instead_of_doubling_it(qd_drawings):
    _, strokes = qd_drawings[2]
    b = Bench()
    b.start()
    before = b.feed(coverage(strokes), n=5).committed.copy()
    pose = (9.0, -6.0, 0.0)                                       # camera px
    events = []
    for _ in range(12):
        res = b.feed(coverage(strokes), pose=pose)
        events += [k for k in ("new_sheet", "paper_shift") if getattr(res, k)]
    assert events == ["paper_shift"]
    # the truth: the at-rest crop of the moved sheet
    h = np.linalg.inv(b.cal.paper_to_cam(256)) @ b.r.paper_to_cam(pose) @ np.linalg.inv(b.r.paper_to_cam()) \
        @ b.cal.paper_to_cam(256)
    moved_truth = cv2.warpPerspective(truth_mask(strokes).astype(np.uint8), h, (256, 256),
                                      flags=cv2.INTER_NEAREST).astype(bool)
    assert tolerant_iou(res.committed, moved_truth, 2) >= 0.9
    assert res.committed.sum() < 1.3 * before.sum(), "the drawing was committed twice"


def test_change_time_is_the_first_sighting_of_the_ink(qd_drawings):
    """t_ink (the origin of the latency metric) is the capture time of the frame where the ink
    was first seen, not of the frame where persistence confirmed it."""
    _, strokes = qd_drawings[3]
    b = Bench()
    b.start()
    first = b.frame(coverage(strokes))
    res = b.v.process(first)
    assert not res.changed
    for _ in range(VisionParams().persist_frames - 1):
        res = b.feed(coverage(strokes))
    assert res.changed and res.t_ink == pytest.approx(first.t_capture)


def test_reference_ignores_ink_left_on_the_sheet(qd_drawings):
    """A 'blank' reference taken over an old drawing still flat-fields: the closing removes the ink."""
    _, strokes = qd_drawings[4]
    b = Bench()
    crops = [b.v.crop(b.frame(coverage(strokes)).image) for _ in range(5)]
    blank = [b.v.crop(b.frame(None).image) for _ in range(5)]
    ref_inked, ref_blank = make_reference(crops), make_reference(blank)
    assert np.abs(ref_inked / ref_blank - 1)[20:-20, 20:-20].mean() < 0.02


def test_tracks_the_scripted_synthetic_table():
    """The whole script (drawing with a hand and pen, hold, pass-over, new sheet) through vision:
    the ink tracked in the hold matches the truth, and the new sheet clears it."""
    p = SyntheticParams(realtime=False, seed=5, pass_prob=1.0, shift_prob=0.0, idle_s=0.5, hold_s=3.0)
    table = SyntheticTable(p)
    table.open()
    b = Bench(p)
    b.v.capture_reference()
    kinds_seen, best_hold_iou, cleared = set(), 0.0, False
    for _ in range(int(30 * 25)):
        f = table.read(0.1)
        res = b.v.process(Frame(f.image, f.t_capture, f.seq))
        active = {s.kind for s in table._segments if s.t0 <= table.scene_time() < s.t1}
        kinds_seen |= active
        if "hold" in active and "pass" not in active and res.ready:
            best_hold_iou = max(best_hold_iou, tolerant_iou(res.committed, table.true_ink(256), 2))
        cleared |= res.new_sheet and res.ink_px == 0
        if cleared and table._cycle >= 1:
            break
    assert {"draw", "hold", "pass", "swap"} <= kinds_seen
    assert best_hold_iou >= 0.9
    assert cleared
