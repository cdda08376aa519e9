"""SketchSimplifier against the Simo-Serra model_gan reference fixture (../shared/fixtures).

Equal outputs with fill.py weights show the layer layout (kernels, strides, paddings, transposed
convs), the activations, the normalisation constants and the replicate padding are the reference's.
"""
from __future__ import annotations

import json
import math

import pytest
import torch

from models.sketch_simplifier import SketchSimplifier


@pytest.fixture(scope="module")
def manifest(fixtures_dir):
    return json.loads((fixtures_dir / "manifests" / "sketch_simplification_gan.json").read_text())


@pytest.fixture(scope="module")
def fx(fixtures_dir):
    return torch.load(fixtures_dir / "sketch_simplification_gan.pt", weights_only=True)


@pytest.fixture(scope="module")
def simplifier(fixtures_dir, manifest):
    from fill import fill_state_dict

    net = SketchSimplifier("model_gan").eval()
    sd = net.state_dict()
    assert list(sd) == manifest["keys"], "SketchSimplifier keys/order differ from the released model_gan layout"
    bad = {k: (list(v.shape), manifest["shapes"][k]) for k, v in sd.items() if list(v.shape) != manifest["shapes"][k]}
    assert not bad, f"shapes (ours, manifest) differ: {bad}"
    filled = fill_state_dict(sd)
    for k, (first, last, total) in manifest["fill"]["probe"].items():
        flat = filled[k].reshape(-1)
        assert flat[0].item() == first and flat[-1].item() == last, f"fill probe of {k} differs: the fill changed"
        assert math.isclose(flat.sum(dtype=torch.float64).item(), total, rel_tol=1e-9, abs_tol=1e-9), k
    net.load_state_dict(filled, strict=True)
    return net


def max_abs(a, b):
    return (a - b).abs().max().item()


def test_layer_types_and_activations():
    net = SketchSimplifier()
    convs = [m for m in net if isinstance(m, torch.nn.Conv2d)]
    ups = [m for m in net if isinstance(m, torch.nn.ConvTranspose2d)]
    assert (len(convs), len(ups), len(net)) == (20, 3, 46)
    assert all((m.kernel_size, m.stride, m.padding) == ((4, 4), (2, 2), (1, 1)) for m in ups)
    assert all(isinstance(m, torch.nn.ReLU) for m in list(net)[1:-1:2]) and isinstance(net[-1], torch.nn.Sigmoid)


def test_normalisation_constants_match_manifest(manifest, fx):
    for variant, (mean, std) in manifest["immean_imstd"].items():
        assert SketchSimplifier.NORMALISATION[variant] == (mean, std), variant
    net = SketchSimplifier("model_pencil1")
    assert (net.immean, net.imstd) == tuple(manifest["immean_imstd"]["model_pencil1"])
    assert net.config == {"variant": "model_pencil1"}
    assert SketchSimplifier.NORMALISATION["model_gan"] == (fx["meta"]["immean"], fx["meta"]["imstd"])
    with pytest.raises(ValueError, match="variant"):
        SketchSimplifier("model_gan.t7")


def test_output_and_logits_match_reference(simplifier, fx):
    captured = {}
    hook = simplifier[-2].register_forward_hook(lambda m, i, o: captured.__setitem__("logits", o))
    try:
        with torch.no_grad():
            y = simplifier.simplify(fx["x"])
    finally:
        hook.remove()
    errs = {"y": max_abs(y, fx["y"]), "logits": max_abs(captured["logits"], fx["logits"])}
    print("sketch simplifier 256² max abs diffs", {k: f"{v:.3g}" for k, v in errs.items()})
    assert errs["y"] <= 1e-5 and errs["logits"] <= 1e-4, errs


def test_padded_input_matches_reference(simplifier, fx):
    x = fx["x_pad_case"]
    seen = {}
    hook = simplifier[0].register_forward_pre_hook(lambda m, args: seen.__setitem__("input", args[0]))
    try:
        with torch.no_grad():
            y_pad = simplifier.simplify(x, crop=False)
            y = simplifier.simplify(x)
    finally:
        hook.remove()
    # the network sees the normalised, replicate-padded 104x80 image of the reference simplify.py
    assert max_abs(seen["input"], fx["x_pad_case_norm_padded"]) <= 1e-6
    err = max_abs(y_pad, fx["y_pad_case"])
    print(f"sketch simplifier pad case max abs diff {err:.3g}")
    assert y_pad.shape == (1, 1, 104, 80) and err <= 1e-5
    assert y.shape == x.shape and torch.equal(y, y_pad[..., :100, :75])


def test_simplify_rejects_colour_input():
    with pytest.raises(ValueError, match=r"\[B, 1, H, W\]"):
        SketchSimplifier().simplify(torch.rand(1, 3, 16, 16))
