"""The one error the calibration tool raises for the technician: what went wrong, what to redo."""
from __future__ import annotations


class CalibrationError(RuntimeError):
    """A calibration step failed; the message says what to redo. Nothing has been saved."""

    def __init__(self, message: str, redo: list[int] | None = None):
        super().__init__(message)
        self.redo = sorted(redo) if redo else []       # 0-based point indices the technician must redo
