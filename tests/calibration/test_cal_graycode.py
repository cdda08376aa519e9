import numpy as np
import pytest

from calibration.errors import CalibrationError
from calibration.graycode import correspondences, decode, gray_code, gray_decode, n_bits, patterns, run_filter_off
from calibration.simulate import SimulatedProjector, SimulatedTable, Technician


def test_gray_code_round_trip_and_single_bit_steps():
    v = np.arange(4096)
    g = gray_code(v)
    assert np.array_equal(gray_decode(g), v)
    assert (np.bitwise_count(g[1:] ^ g[:-1]) == 1).all()        # neighbours differ in one bit
    assert n_bits(1920) == 11 and n_bits(1080) == 11 and n_bits(1024) == 10


def test_decoding_the_patterns_themselves_gives_every_pixel():
    size = (200, 120)
    caps = {(a, b, i): img for a, b, i, img in patterns(size)}
    px, py, valid = decode(caps, size)
    assert valid.all()
    ys, xs = np.mgrid[0:120, 0:200]
    assert np.array_equal(px, xs + 0.5) and np.array_equal(py, ys + 0.5)
    cam, proj = correspondences(px, py, valid, step=10)
    assert len(cam) == 20 * 12 and np.array_equal(proj, cam + 0.5)


def test_unlit_pixels_are_invalid():
    size = (64, 32)
    caps = {(a, b, i): img for a, b, i, img in patterns(size)}
    caps = {k: v.copy() for k, v in caps.items()}
    for v in caps.values():
        v[:, :10] = 128                                         # a shadow: pattern and inverse look alike
    _, _, valid = decode(caps, size)
    assert not valid[:, :10].any() and valid[:, 10:].all()


def test_filter_off_flow_end_to_end():
    table = SimulatedTable(12, technician=Technician())
    projector = SimulatedProjector(table)
    r = run_filter_off(projector, table, paper_mm=table.p.paper_mm, settle_frames=0)
    assert not table.filter_off                                  # the technician was asked to put it back
    assert r.quality.ok, r.quality.failures()
    err = table.truth.error_of(r.calibration.cam_to_projector)
    assert np.sqrt(np.mean(err ** 2)) < 0.5 and err.max() < 1.5
    assert len(r.calibration.points_cam) <= 500                  # the file keeps a sample of thousands


def test_filter_left_in_is_reported():
    class KeepsFilter(Technician):
        def act(self, table):
            super().act(table)
            table.filter_off = False                             # swings it away... and back at once
    table = SimulatedTable(12, technician=KeepsFilter())
    with pytest.raises(CalibrationError, match="is the filter really off"):
        run_filter_off(SimulatedProjector(table), table, paper_mm=table.p.paper_mm, settle_frames=0)
