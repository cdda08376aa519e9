import numpy as np
import pytest

from calibration.dots import DotParams, DotWatcher, detect_new_dots
from calibration.simulate import SimulatedTable


@pytest.fixture(scope="module")
def table():
    return SimulatedTable(7)


def test_subpixel_centroid_against_planted_dots(table):
    """Dots of random size and darkness at random subpixel places: centre found to ~0.1 px."""
    rng = np.random.default_rng(3)
    errors = []
    before = table.read()
    for _ in range(25):
        mm = rng.uniform([20, 20], [400, 277])
        table.add_dot(mm, rng.uniform(0.6, 1.1), rng.uniform(0.35, 0.85))
        after = table.read()
        ch = detect_new_dots(before, after)
        assert len(ch.dots) == 1 and not ch.large
        errors.append(np.linalg.norm(np.array(ch.dots[0].xy) - table.truth.mm_to_raw(mm)[0]))
        before = after
    errors = np.array(errors)
    assert np.sqrt(np.mean(errors ** 2)) < 0.15, errors
    assert errors.max() < 0.35, errors


def test_no_change_gives_nothing_and_two_dots_give_two(table):
    a = table.read()
    assert not detect_new_dots(a, table.read()).dots          # noise alone is not a dot
    table.add_dot([100, 100], 0.8, 0.6)
    table.add_dot([300, 200], 0.8, 0.6)
    ch = detect_new_dots(a, table.read())
    assert len(ch.dots) == 2


def test_large_dark_area_is_not_a_dot(table):
    a = table.read()
    table.set_hand([200, 150])
    ch = detect_new_dots(a, table.read())
    table.set_hand(None)
    assert ch.large and not ch.dots
    assert ch.changed_fraction > DotParams().moved_fraction      # a hand this size counts as movement


def test_watcher_waits_for_the_hand_to_leave(table):
    """The hand covers the sheet for a few frames; the dot is reported once, after settling."""
    w = DotWatcher(DotParams(stable_frames=3))
    w.rebase(table.read())
    reports = []
    for k in range(3):
        table.set_hand([150 - 10 * k, 120])
        reports.append(w.update(table.read()))
    table.set_hand(None)
    table.add_dot([180, 90], 0.9, 0.7)
    for _ in range(6):
        reports.append(w.update(table.read()))
    got = [(i, r) for i, r in enumerate(reports) if r is not None]
    assert len(got) == 1, [i for i, _ in got]
    i, ch = got[0]
    assert i == 6          # frame 3 changed (hand gone, dot there); frames 4, 5, 6 still: report at 6
    assert len(ch.dots) == 1 and not ch.large
    assert np.linalg.norm(np.array(ch.dots[0].xy) - table.truth.mm_to_raw([180, 90])[0]) < 0.3
