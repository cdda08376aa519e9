"""`python -m calibration [pen-dot|fiducial|filter-off|verify|pen-test] [options]`.

Live: a pygame window on the projector (hardware profile's display) and the IR camera. With
`--simulate` the same flows run headless against calibration/simulate.py's table, report the error
against its ground truth, and end stdout with exactly `rms_px=<float> max_px=<float>`.
A calibration is saved only when every quality check passes; otherwise the previous file stays.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from loguru import logger

from calibration.errors import CalibrationError
from calibration.fiducial import SheetSpec, run_fiducial, save_sheet
from calibration.graycode import run_filter_off
from calibration.pendot import CalibrationResult, grid_targets, run_pen_dot
from calibration.pentest import run_pen_test
from calibration.report import format_report, save_report_png
from calibration.store import Calibration, identity_calibration, load_calibration, save_calibration
from calibration.verify import run_verify
from common.config import ConfigError
from common.logging import setup_logging
from common.paths import REPO_ROOT
from hardware.profiles import HardwareProfile, load_profile

MODES = ("pen-dot", "fiducial", "filter-off", "verify", "pen-test")
EXIT_OK, EXIT_ERROR, EXIT_CHECKS = 0, 1, 2
SIM_PATIENCE = 60            # simulated frames to wait for a dot before calling it missed
LIVE_PATIENCE = 30 * 600     # ten minutes at 30 fps


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m calibration", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", nargs="?", default="pen-dot", choices=MODES)
    ap.add_argument("--profile", type=Path, default=REPO_ROOT / "hardware/profiles/default.yaml")
    ap.add_argument("--out", type=Path, default=None,
                    help="calibration file (default calibration.yaml; with --simulate nothing is saved unless given)")
    ap.add_argument("--report", type=Path, default=None, help="residual plot PNG (default: beside --out)")
    ap.add_argument("--grid", type=int, default=4, help="pen-dot grid size, 3 to 5")
    ap.add_argument("--simulate", action="store_true", help="run headless against a simulated table")
    ap.add_argument("--seed", type=int, default=0, help="simulated table (and verify crosshairs) seed")
    ap.add_argument("--print-sheet", type=Path, default=None, metavar="SHEET.png|.pdf",
                    help="write the printable ChArUco sheet and exit")
    ap.add_argument("--verify-points", type=int, default=5)
    ap.add_argument("--tol-mm", type=float, default=1.0,
                    help="largest acceptable error, mm (calibration: leave-one-out RMS; verify: worst dot)")
    ap.add_argument("--log-level", default="INFO")
    return ap.parse_args(argv)


class _Session:
    """The projector and camera for this run, live or simulated, and the truth when simulated."""

    def __init__(self, args, profile: HardwareProfile, technician=None):
        self.args, self.profile = args, profile
        if args.simulate:
            from calibration.simulate import SimParams, SimulatedProjector, SimulatedTable, Technician

            params = SimParams(projector_size=(profile.display.width, profile.display.height),
                               paper_mm=profile.table.paper_mm)
            self.table = SimulatedTable(args.seed, params, technician or Technician())
            self.projector = SimulatedProjector(self.table)
            self.camera = self.table
            self.roi = self.table.truth.projector_roi()        # what the technician measured on site
            self.patience = SIM_PATIENCE
        else:
            from calibration.interactive import CameraReader, ProjectorWindow

            self.table = None
            self.camera = CameraReader(profile.camera)
            self.projector = ProjectorWindow(profile.display)
            self.roi = profile.projector_roi()
            self.patience = LIVE_PATIENCE

    def truth(self, cal: Calibration) -> tuple[float, float] | None:
        if self.table is None:
            return None
        e = self.table.truth.error_of(cal.cam_to_projector)
        return float(np.sqrt(np.mean(e ** 2))), float(e.max())

    def close(self) -> None:
        for dev in (self.camera, self.projector):
            if hasattr(dev, "close"):
                dev.close()


def _calibrate(mode: str, s: _Session) -> CalibrationResult:
    paper_mm = s.profile.table.paper_mm
    if mode == "fiducial":
        spec = SheetSpec.for_page(paper_mm)
        if s.table is not None:
            from calibration.simulate import lay_sheet

            s.table.technician.outline_truth = lay_sheet(s.table, spec, offset_mm=(1.5, -1.0))
        return run_fiducial(s.projector, s.camera, spec, s.roi, paper_mm=paper_mm, max_loo_mm=s.args.tol_mm)
    if mode == "filter-off":
        return run_filter_off(s.projector, s.camera, paper_mm=paper_mm, settle_frames=0 if s.table else 3,
                              max_loo_mm=s.args.tol_mm)
    return run_pen_dot(s.projector, s.camera, grid_targets(s.args.grid, s.roi), paper_mm=paper_mm,
                       patience_frames=s.patience, max_loo_mm=s.args.tol_mm)


def _save(result: CalibrationResult, s: _Session, out: Path | None) -> int:
    truth = s.truth(result.calibration)
    print(format_report(result, truth))
    report = s.args.report or (out.with_name(out.stem + "_report.png") if out else None)
    if report is not None:
        save_report_png(report, result, truth)
        logger.info(f"report picture: {report}")
    if not result.quality.ok:
        logger.error("calibration NOT saved: " + "; ".join(result.quality.failures()))
        return EXIT_CHECKS
    if out is not None:
        backup = save_calibration(out, result.calibration)
        logger.info(f"saved {out}" + (f" (previous kept as {backup})" if backup else ""))
    return EXIT_OK


def run(args, technician=None) -> int:
    """One CLI run; `technician` replaces the simulated table's (tests inject mistakes with it)."""
    if args.print_sheet is not None:
        path = save_sheet(args.print_sheet, SheetSpec.for_page(load_profile(args.profile).table.paper_mm))
        print(f"calibration sheet written to {path}: print at 100 % on a laser printer")
        return EXIT_OK
    profile = load_profile(args.profile)
    out = args.out if args.out is not None else (None if args.simulate else Path("calibration.yaml"))
    s = _Session(args, profile, technician)
    try:
        if args.mode in ("pen-dot", "fiducial", "filter-off"):
            result = _calibrate(args.mode, s)
            code = _save(result, s, out)
            cal = result.calibration
        else:
            if args.simulate:                      # the simulated table has no saved calibration yet
                cal = _calibrate("pen-dot", s).calibration
            elif args.mode == "pen-test" and not out.exists():
                # choosing pens comes before calibrating: the boxes are then only roughly placed
                logger.warning(f"{out} not found: pen-test boxes placed without a calibration")
                cal = identity_calibration((profile.camera.width, profile.camera.height),
                                           (profile.display.width, profile.display.height))
            else:
                cal = load_calibration(out)
            if args.mode == "verify":
                v = run_verify(s.projector, s.camera, cal, n=args.verify_points, seed=args.seed,
                               tol_mm=args.tol_mm, patience_frames=s.patience)
                print(v.summary())
                code = EXIT_OK if v.ok else EXIT_CHECKS
            else:
                for r in run_pen_test(s.projector, s.camera, cal):
                    print(f"{r.label}: {r.verdict} (contrast {r.contrast:.0%})")
                code = EXIT_OK
        truth = s.truth(cal)
        if truth is not None:
            print(f"rms_px={truth[0]:.4f} max_px={truth[1]:.4f}")
        return code
    finally:
        s.close()


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(level=args.log_level)
    try:
        return run(args)
    except (CalibrationError, ConfigError) as e:
        logger.error(str(e))
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
