"""The shipped default model loads and honours held-out sketches better than the mean-image baseline."""
from __future__ import annotations

import pytest

import models
from common.paths import REPO_ROOT
from training.evaluate import pipeline_config, quickdraw_set, score
from training.make_sketch_pairs import SketchPipeline
from training.metrics import SketchFidelity

DEFAULT = REPO_ROOT / "weights" / "default.pt"


@pytest.fixture(scope="module")
def bundle():
    if not DEFAULT.is_file():
        pytest.skip(f"{DEFAULT} is absent")
    return models.load(DEFAULT, device="cpu")


def test_default_model_loads_with_its_documented_shapes(bundle):
    assert DEFAULT.stat().st_size < 30 * 2 ** 20
    assert bundle.input_size == 128 and bundle.output_size == 128 and bundle.img_channels == 1
    assert "Quick, Draw!" in bundle.meta["data"]


def test_default_model_beats_the_mean_image_on_held_out_sketches(bundle, quickdraw_dir):
    cfg = pipeline_config(bundle)
    sketch, target = quickdraw_set(bundle, cfg, str(quickdraw_dir), holdout=1)
    pick = slice(0, 344, 12)  # 29 held-out drawings spread over the alphabet of categories
    res = score(bundle, SketchFidelity(SketchPipeline(cfg)), sketch[pick], target[pick])
    model, mean = res["rows"]["model"], res["rows"]["mean image"]
    assert model["f_score"] > mean["f_score"] + 0.2
    assert model["chamfer"] < 0.5 * mean["chamfer"]
    assert model["l2"] < 0.85 * mean["l2"]          # and, pixel for pixel, it is closer than the best constant
