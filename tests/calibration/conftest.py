"""One clean simulated pen-dot calibration per session, shared by the tests that only read it."""
from __future__ import annotations

import pytest

from tests.calibration.helpers import simulate_pen_dot


@pytest.fixture(scope="session")
def pen_dot_run():
    """(table, projector, result) of a clean simulated pen-dot calibration, seed 0, 4x4 grid."""
    return simulate_pen_dot(0)
