import re

import numpy as np
import pytest
from PIL import Image

from calibration.errors import CalibrationError
from calibration.fiducial import (OutlineAligner, SheetSpec, detect_sheet, initial_outline, render_sheet,
                                  run_fiducial, save_sheet)
from calibration.simulate import SimulatedProjector, SimulatedTable, Technician, lay_sheet

A3 = (420.0, 297.0)


def test_printable_sheet_has_true_size(tmp_path):
    spec = SheetSpec.for_page(A3)
    png = save_sheet(tmp_path / "sheet.png", spec, dpi=150)
    with Image.open(png) as im:
        assert im.size == (round(420 / 25.4 * 150), round(297 / 25.4 * 150))
        assert tuple(round(v) for v in im.info["dpi"]) == (150, 150)
    pdf = save_sheet(tmp_path / "sheet.pdf", spec, dpi=150)
    # PDF page size in points (1/72 in): A3 landscape = 1190.55 x 841.89
    media = [float(v) for v in re.search(rb"/MediaBox \[([^\]]*)\]", pdf.read_bytes())[1].split()]
    assert media[2] == pytest.approx(1190.55, abs=1.0) and media[3] == pytest.approx(841.89, abs=1.0)


def test_sheet_detected_on_its_own_image_with_exact_geometry():
    spec = SheetSpec.for_page(A3)
    ppm = 4.0
    page = render_sheet(spec, ppm)
    cam, board_mm, ids = detect_sheet(page, spec)
    assert len(ids) == (spec.squares[0] - 1) * (spec.squares[1] - 1)
    expected = (board_mm + spec.origin_mm) * ppm - 0.5          # pixel centres
    assert np.abs(cam - expected).max() < 0.3


def test_mirrored_view_is_detected_and_mapped_back():
    """A camera under the table sees the print mirrored."""
    spec = SheetSpec.for_page(A3)
    page = render_sheet(spec, 4.0)
    cam, board_mm, ids = detect_sheet(np.ascontiguousarray(page[:, ::-1]), spec)
    direct, _, ids2 = detect_sheet(page, spec)
    order = [ids2.index(i) for i in ids]
    assert np.abs(cam[:, 0] - (page.shape[1] - 1 - direct[order, 0])).max() < 0.3


def test_blank_frame_says_what_to_check():
    with pytest.raises(CalibrationError, match="laser-printed"):
        detect_sheet(np.full((720, 1280), 200, np.uint8), SheetSpec.for_page(A3))


def test_outline_aligner_keys():
    a = OutlineAligner(np.array([[0, 0], [100, 0], [100, 50], [0, 50]], float))
    a.handle("right")
    a.handle("shift+down")
    assert a.quad[0].tolist() == [1, 10] and a.quad[1].tolist() == [100, 0]
    a.handle("tab")
    a.handle("left")
    assert a.quad[1].tolist() == [99, 0]
    a.handle("shift+tab")
    assert a.selected == 0
    a.handle("4")
    a.handle("a")
    a.handle("up")
    assert a.quad[:, 1].tolist() == [9, -1, 49, 49]                # all four moved
    assert a.scene().selected_corner is None
    a.handle("return")
    assert a.done
    with pytest.raises(CalibrationError, match="aborted"):
        a.handle("escape")


def test_fiducial_flow_end_to_end():
    table = SimulatedTable(9, technician=Technician())
    spec = SheetSpec.for_page(A3)
    table.technician.outline_truth = lay_sheet(table, spec, offset_mm=(2.0, -1.5))
    projector = SimulatedProjector(table)
    roi = table.truth.projector_roi()
    guess = initial_outline(spec, roi)
    assert np.abs(guess - table.technician.outline_truth).max() > 20     # the technician had work to do
    r = run_fiducial(projector, table, spec, roi, paper_mm=A3)
    assert r.quality.ok, r.quality.failures()
    assert r.calibration.method == "fiducial"
    err = table.truth.error_of(r.calibration.cam_to_projector)
    assert np.sqrt(np.mean(err ** 2)) < 1.5 and err.max() < 3.0
    # the outline the technician accepted sits on the printed one
    final = [s.outline for s in projector.shown if s.outline is not None][-1]
    assert np.abs(final - table.technician.outline_truth).max() < 1.5
