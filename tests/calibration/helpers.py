"""Simulated calibrations for the tests."""
from __future__ import annotations

from calibration.pendot import grid_targets, run_pen_dot
from calibration.simulate import SimulatedProjector, SimulatedTable, Technician


def simulate_pen_dot(seed: int, grid: int = 4, technician: Technician | None = None):
    """(table, projector, result) of the pen-dot flow on a simulated table."""
    table = SimulatedTable(seed, technician=technician or Technician())
    projector = SimulatedProjector(table)
    result = run_pen_dot(projector, table, grid_targets(grid, table.truth.projector_roi()),
                         paper_mm=table.p.paper_mm, patience_frames=60)
    return table, projector, result
