"""Projector-camera calibration: `python -m calibration` (see calibration/__main__.py)."""
