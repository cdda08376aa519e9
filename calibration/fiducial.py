"""The fiducial-sheet calibration: a printed ChArUco board the IR camera sees, an outline the
technician aligns to it on the projector with the arrow keys.

Two homographies combine: camera -> board millimetres (from the ChArUco corners, many points,
lens included) and board millimetres -> projector pixels (from the four aligned outline corners).
The second one turns every ChArUco corner into a projector target, so the camera fit, the
leave-one-out error and the report are exactly those of the pen-dot flow.

Laser toner is carbon black and dark at 850 nm; inkjet dye often is not: print with a laser.
"""
from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from loguru import logger

from calibration.errors import CalibrationError
from calibration.fit import fit_camera_to_target
from calibration.geometry import apply_homography
from calibration.pendot import CalibrationResult, finish
from calibration.scene import Camera, Projector, Scene
from common.atomic import atomic_write_bytes

MIN_CORNERS = 8


@dataclass
class SheetSpec:
    squares: tuple[int, int] = (11, 7)         # ChArUco squares across, down
    square_mm: float = 36.0                    # 11 x 7 squares of 36 mm: the inner corners span 62 % of A3
    marker_mm: float = 27.0
    dictionary: int = cv2.aruco.DICT_5X5_100
    page_mm: tuple[float, float] = (420.0, 297.0)   # A3 landscape, the drawing paper's size

    @classmethod
    def for_page(cls, page_mm: tuple[float, float]) -> SheetSpec:
        """The largest whole-millimetre squares that leave 12 mm side and 22 mm top/bottom margins
        (printers do not print the last ~5 mm; the caption goes above the board)."""
        sq = float(np.floor(min((page_mm[0] - 24) / 11, (page_mm[1] - 44) / 7)))
        if sq < 10:
            raise CalibrationError(f"paper {page_mm[0]:g} x {page_mm[1]:g} mm is too small for the calibration sheet")
        return cls(square_mm=sq, marker_mm=0.75 * sq, page_mm=tuple(float(v) for v in page_mm))

    @property
    def board_mm(self) -> tuple[float, float]:
        return self.squares[0] * self.square_mm, self.squares[1] * self.square_mm

    @property
    def origin_mm(self) -> tuple[float, float]:
        """Board's top-left corner on the page: centred."""
        w, h = self.board_mm
        return (self.page_mm[0] - w) / 2, (self.page_mm[1] - h) / 2

    def board(self) -> cv2.aruco.CharucoBoard:
        d = cv2.aruco.getPredefinedDictionary(self.dictionary)
        return cv2.aruco.CharucoBoard(self.squares, self.square_mm, self.marker_mm, d)

    def outline_mm(self) -> np.ndarray:
        """The board's outer rectangle (board mm, TL TR BR BL): the line the technician aligns to."""
        w, h = self.board_mm
        return np.array([[0, 0], [w, 0], [w, h], [0, h]], dtype=np.float64)


def render_sheet(spec: SheetSpec, px_per_mm: float = 8.0) -> np.ndarray:
    """The printable page, uint8 (255 = paper): board, its outline, corner ticks and a caption."""
    pw, ph = (int(round(v * px_per_mm)) for v in spec.page_mm)
    page = np.full((ph, pw), 255, np.uint8)
    bw, bh = (int(round(v * px_per_mm)) for v in spec.board_mm)
    board = spec.board().generateImage((bw, bh), marginSize=0, borderBits=1)
    ox, oy = (int(round(v * px_per_mm)) for v in spec.origin_mm)
    page[oy:oy + bh, ox:ox + bw] = board
    line = max(1, int(round(0.4 * px_per_mm)))
    cv2.rectangle(page, (ox - line, oy - line), (ox + bw + line - 1, oy + bh + line - 1), 0, line)
    tick = int(10 * px_per_mm)
    for cx, cy, sx, sy in ((ox, oy, -1, -1), (ox + bw, oy, 1, -1), (ox + bw, oy + bh, 1, 1), (ox, oy + bh, -1, 1)):
        cv2.line(page, (cx, cy), (cx + sx * tick, cy), 0, line)
        cv2.line(page, (cx, cy), (cx, cy + sy * tick), 0, line)
    caption = (f"New Snow calibration sheet: ChArUco {spec.squares[0]}x{spec.squares[1]}, "
               f"squares {spec.square_mm:g} mm. "
               "Print at 100 % on a LASER printer (toner is visible at 850 nm).")
    cv2.putText(page, caption, (ox, oy - int(13 * px_per_mm)), cv2.FONT_HERSHEY_SIMPLEX,
                0.12 * px_per_mm, 0, max(1, int(0.2 * px_per_mm)), cv2.LINE_AA)
    return page


def save_sheet(path: str | Path, spec: SheetSpec, dpi: int = 300) -> Path:
    """Write the page as PNG or PDF (by suffix) at its true size, so a 100 % print measures right."""
    from PIL import Image

    path = Path(path)
    img = Image.fromarray(render_sheet(spec, px_per_mm=dpi / 25.4))
    buf = io.BytesIO()
    fmt = "PDF" if path.suffix.lower() == ".pdf" else "PNG"
    if fmt == "PDF":
        img.save(buf, format="PDF", resolution=float(dpi))
    else:
        img.save(buf, format="PNG", dpi=(dpi, dpi), optimize=True)
    return atomic_write_bytes(path, buf.getvalue())


def detect_sheet(frame: np.ndarray, spec: SheetSpec) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """ChArUco corners seen in `frame`: raw camera px [N, 2], board mm [N, 2], ids.

    A camera under the table sees the printed side through the paper, mirrored, and ArUco
    markers are not mirror-symmetric: the mirrored frame is searched too, and its corners mapped
    back to the raw frame.
    """
    detector = cv2.aruco.CharucoDetector(spec.board())
    corners, ids, _, _ = detector.detectBoard(frame)
    if ids is None or len(ids) < MIN_CORNERS:
        m_corners, m_ids, _, _ = detector.detectBoard(np.ascontiguousarray(frame[:, ::-1]))
        if m_ids is not None and (ids is None or len(m_ids) > len(ids)):
            corners, ids = m_corners.copy(), m_ids
            corners[..., 0] = frame.shape[1] - 1 - corners[..., 0]
    n = 0 if ids is None else len(ids)
    if n < MIN_CORNERS:
        raise CalibrationError(
            f"the camera sees only {n} ChArUco corners (need {MIN_CORNERS}): is the sheet laser-printed (inkjet "
            "dye is often invisible at 850 nm), flat, evenly lit and entirely inside the camera's view? "
            "`python -m calibration pen-test` shows what the camera sees.")
    ids = ids.ravel()
    board_mm = spec.board().getChessboardCorners()[ids, :2].astype(np.float64)
    return corners.reshape(-1, 2).astype(np.float64), board_mm, ids.tolist()


class OutlineAligner:
    """Arrow-key state machine that moves the projected outline's corners onto the printed ones.

    Tab / shift+Tab or 1-4: select a corner; arrows: move it 1 px (shift: 10 px); A: move all
    four together; Enter: accept; Escape: abort.
    """

    def __init__(self, quad: np.ndarray):
        self.quad = np.asarray(quad, dtype=np.float64).copy()
        assert self.quad.shape == (4, 2), f"outline must be 4 points, got {self.quad.shape}"
        self.selected = 0
        self.move_all = False
        self.done = False

    def handle(self, key: str) -> None:
        shift = key.startswith("shift+")
        name = key[6:] if shift else key
        step = 10.0 if shift else 1.0
        moves = {"left": (-step, 0), "right": (step, 0), "up": (0, -step), "down": (0, step)}
        if name in moves:
            if self.move_all:
                self.quad += moves[name]
            else:
                self.quad[self.selected] += moves[name]
        elif name == "tab":
            self.selected = (self.selected + (-1 if shift else 1)) % 4
        elif name in ("1", "2", "3", "4"):
            self.selected = int(name) - 1
        elif name == "a":
            self.move_all = not self.move_all
        elif name == "return":
            self.done = True
        elif name == "escape":
            raise CalibrationError("calibration aborted by the technician; nothing was saved")

    def scene(self) -> Scene:
        corner = ["top-left", "top-right", "bottom-right", "bottom-left"][self.selected]
        mode = "all four corners" if self.move_all else f"the {corner} corner"
        return Scene(outline=self.quad.copy(), selected_corner=None if self.move_all else self.selected,
                     lines=[f"Align the projected outline with the printed one. Arrows move {mode} "
                            "(shift: x10), Tab: next corner, A: move all, Enter: done."])


def initial_outline(spec: SheetSpec, projector_roi: tuple[float, float, float, float]) -> np.ndarray:
    """A first guess: the board where it would be if the page filled the projector ROI."""
    x, y, w, h = projector_roi
    s = min(w / spec.page_mm[0], h / spec.page_mm[1])
    ox, oy = spec.origin_mm
    return spec.outline_mm() * s + [x + ox * s, y + oy * s]


def wait_for_key(projector: Projector, camera: Camera, scene: Scene, key: str = "return",
                 patience_frames: int = 100000) -> np.ndarray:
    """Show `scene` until the technician presses `key`; returns the frame after it."""
    projector.show(scene)
    for _ in range(patience_frames):
        frame = camera.read()
        keys = projector.keys()
        if "escape" in keys:
            raise CalibrationError("calibration aborted by the technician; nothing was saved")
        if key in keys:
            return camera.read()
    raise CalibrationError(f"timed out waiting for {key}; nothing was saved")


def run_fiducial(projector: Projector, camera: Camera, spec: SheetSpec, projector_roi, *,
                 paper_mm: tuple[float, float], ransac_px: float = 4.0, patience_frames: int = 100000,
                 min_coverage: float = 0.45, max_loo_mm: float = 1.0) -> CalibrationResult:
    frame = camera.read()
    cam, board_mm, ids = detect_sheet(frame, spec)
    logger.info(f"ChArUco: {len(ids)} corners seen")
    aligner = OutlineAligner(initial_outline(spec, projector_roi))
    projector.show(aligner.scene())
    for _ in range(patience_frames):
        camera.read()
        for key in projector.keys():
            aligner.handle(key)
        if aligner.done:
            break
        projector.show(aligner.scene())
    else:
        raise CalibrationError("timed out aligning the outline; nothing was saved")
    board_to_proj = cv2.getPerspectiveTransform(np.float32(spec.outline_mm()), np.float32(aligner.quad))
    target = apply_homography(board_to_proj.astype(np.float64), board_mm)
    fit = fit_camera_to_target(cam, target, frame.shape[::-1], ransac_px=ransac_px,
                               labels=[f"corner {i}" for i in ids])
    paper_frame = wait_for_key(projector, camera, Scene(
        lines=["Replace the calibration sheet with the drawing paper, in the same place; press Enter."],
        request="lay-paper"), "return", patience_frames)
    return finish(fit, cam, target, paper_frame, projector_size=projector.size, paper_mm=paper_mm,
                  method="fiducial", min_coverage=min_coverage, max_loo_mm=max_loo_mm)
