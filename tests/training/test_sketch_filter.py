"""pSp's pencil-sketch filter: byte-exact against the reference fixture and against OpenCV itself."""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import torch

from training.sketch_filter import pencil_sketch, rgb_to_gray


def cv2_sketch(gray: np.ndarray) -> np.ndarray:
    """The reference filter written with the OpenCV calls it is specified by (README, generate_sketch_data.py)."""
    def sobel(i):
        return cv2.bitwise_or(cv2.Sobel(i, cv2.CV_8U, 0, 1, ksize=3), cv2.Sobel(i, cv2.CV_8U, 1, 0, ksize=3))

    b = cv2.GaussianBlur(gray, (3, 3), 0)
    return 255 - cv2.addWeighted(sobel(b), 0.75, sobel(255 - b), 0.75, 0)


@pytest.fixture(scope="module")
def faces(fixtures_dir):
    return torch.load(fixtures_dir / "psp_sketch_filter_utk6.pt", weights_only=True)


def test_gray_and_sketch_equal_fixture_batched(faces):
    gray = rgb_to_gray(faces["rgb"].numpy())
    assert torch.equal(torch.from_numpy(gray), faces["gray"])
    sketch = pencil_sketch(gray)
    diff = np.abs(sketch.astype(int) - faces["sketch"].numpy()).max()
    print(f"pencil filter max abs diff on the 6 faces: {diff}")
    assert torch.equal(torch.from_numpy(sketch), faces["sketch"])


def test_single_image_equals_its_batch_row(faces):
    gray = faces["gray"].numpy()
    for i in range(len(gray)):
        out = pencil_sketch(gray[i])
        assert out.shape == gray[i].shape and out.dtype == np.uint8
        assert np.array_equal(out, faces["sketch"][i].numpy())


@pytest.mark.parametrize("shape", [(2, 2), (3, 7), (31, 64), (101, 77)])
def test_matches_opencv_on_random_images(shape):
    rng = np.random.default_rng(1)
    # uniform noise hits the saturations (Sobel < 0 and > 255, addWeighted > 255) and rounding ties;
    # smooth ramps hit the small-gradient regime
    noise = rng.integers(0, 256, (4, *shape), dtype=np.uint8)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    ramp = ((yy * 3 + xx * 5) % 256).astype(np.uint8)[None]
    for img in np.concatenate([noise, ramp]):
        assert np.array_equal(pencil_sketch(img), cv2_sketch(img))
    rgb = rng.integers(0, 256, (*shape, 3), dtype=np.uint8)
    assert np.array_equal(rgb_to_gray(rgb), cv2.cvtColor(np.ascontiguousarray(rgb[..., ::-1]), cv2.COLOR_BGR2GRAY))


def test_rejects_wrong_inputs():
    with pytest.raises(TypeError, match="uint8"):
        pencil_sketch(np.zeros((8, 8), np.float32))
    with pytest.raises(ValueError, match=r"\[H, W\] or \[B, H, W\]"):
        pencil_sketch(np.zeros((1, 8, 8, 1), np.uint8))
    with pytest.raises(ValueError, match="2x2"):
        pencil_sketch(np.zeros((1, 9), np.uint8))
    with pytest.raises(ValueError, match=r"\[\.\.\., 3\]"):
        rgb_to_gray(np.zeros((4, 4), np.uint8))
