"""Landmark detectors psi: MediaPipe on a real face (skips without mediapipe) and the ink-hull landmarks."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from editing import landmarks


def square_drawing(size=64, x0=16, y0=20, side=24, width=2):
    """A white page with a black square outline, in [-1, 1]."""
    img = np.ones((size, size))
    img[y0:y0 + width, x0:x0 + side] = -1
    img[y0 + side - width:y0 + side, x0:x0 + side] = -1
    img[y0:y0 + side, x0:x0 + width] = -1
    img[y0:y0 + side, x0 + side - width:x0 + side] = -1
    return torch.tensor(img, dtype=torch.float32)[None, None]


def test_ink_hull_landmarks_sit_on_the_drawing_and_move_with_it():
    psi = landmarks.InkHullLandmarks(n_landmarks=8, beta=8.0)
    a = psi(square_drawing())
    assert a.shape == (1, 2, 8)
    # direction 0 points right (+x): the landmark lies near the right edge of the square (x ~ 38.5)
    assert 36 < a[0, 0, 0] < 40 and abs(a[0, 1, 0] - 31.5) < 1.0
    # direction 2 points down (+y in image rows): near the bottom edge (y ~ 42.5)
    assert 40 < a[0, 1, 2] < 44
    # translating the drawing translates every landmark by the same amount
    b = psi(square_drawing(x0=20, y0=14))
    np.testing.assert_allclose(b - a, np.broadcast_to([[4.0], [-6.0]], (1, 2, 8)), atol=1e-6)
    # an empty page has no landmarks
    assert np.isnan(psi(torch.ones(1, 1, 32, 32))).all()


def test_ink_hull_landmarks_are_smooth_in_the_image():
    psi = landmarks.InkHullLandmarks(n_landmarks=12)
    img = square_drawing()
    eps = 1e-3 * torch.randn_like(img)
    assert np.abs(psi(img + eps) - psi(img)).max() < 0.05


def test_to_uint8_hwc_replicates_grey():
    out = landmarks.to_uint8_hwc(torch.tensor([[-1.0, 0.0], [1.0, 2.0]])[None, None])
    assert out.shape == (1, 2, 2, 3) and out.dtype == np.uint8
    assert out[0, :, :, 0].tolist() == [[0, 128], [255, 255]] and (out[..., 0] == out[..., 2]).all()


def test_mediapipe_detector_reports_a_clear_error_when_missing(shared):
    task = shared / "data" / "faces_samples" / "face_landmarker.task"
    if landmarks.mediapipe_available():
        pytest.skip("mediapipe is installed; the missing-package path does not apply")
    with pytest.raises(ImportError, match="pip install mediapipe"):
        landmarks.MediaPipeLandmarks(task)
    with pytest.raises(FileNotFoundError, match="not found"):
        landmarks.MediaPipeLandmarks(shared / "no_such.task")


def test_mediapipe_finds_478_landmarks_on_a_real_face(shared):
    if not landmarks.mediapipe_available():
        pytest.skip("mediapipe is not installed (it requires numpy<2; this project pins numpy 2.x)")
    from PIL import Image

    folder = shared / "data" / "faces_samples"
    grid = np.asarray(Image.open(folder / "semantic_diffusion_pca.png").convert("RGB"))
    tile = torch.tensor(grid[:256, :256], dtype=torch.float32).permute(2, 0, 1)[None] / 127.5 - 1
    pts = landmarks.MediaPipeLandmarks(folder / "face_landmarker.task")(tile)
    assert pts.shape == (1, 2, 478) and np.isfinite(pts).all()
    assert (pts > 0).all() and (pts < 256).all()
