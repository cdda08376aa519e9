"""Projector-camera calibration: `python -m calibration` (see calibration/cli.py).

Pure functions over numpy frames, each testable alone:
  dots.py      new pen dots by frame differencing, subpixel centroid, a watcher that waits for stillness
  fit.py       RANSAC homography + division-model lens, degeneracy checks, leave-one-out, coverage
  paper.py     the sheet's corners in the IR frame;  drift.py  boot-time check against the stored ones
  fiducial.py  printable ChArUco sheet, its detection, the arrow-key outline aligner
  graycode.py  Gray-code stripes for the filter-off path;  verify.py  closed-loop check;  pentest.py
  store.py     the calibration file the runtime reads;  report.py  console table and residual plot PNG
The flows (pendot.run_pen_dot, fiducial.run_fiducial, ...) talk to a Projector and a Camera
(scene.py): the pygame window + V4L2 camera (interactive.py) or the simulated table (simulate.py).
"""
