"""pSp encoders and wrapper against the pixel2style2pixel reference fixtures (../shared/fixtures).

The reference numbers come from eladrich/pixel2style2pixel run with weights from fill.py; matching them
within the README's tolerances shows the key layout, every layer's arithmetic (BatchNorm eps, PReLU,
SE gate, FPN align_corners, LeakyReLU 0.01, EqualLinear scale) and the W+ assembly are the reference's.
"""
from __future__ import annotations

import hashlib
import json
import math

import pytest
import torch

from models.psp import PSP, CompactEncoder, GradualStyleEncoder, get_blocks
from models.stylegan2 import Generator

ENCODER_CASES = {
    "nc1_s14": dict(input_nc=1, n_styles=14, fixture="psp_encoder_irse50_nc1_s14.pt", manifest="psp_sketch256_nc1.json"),
    "nc3_s18": dict(input_nc=3, n_styles=18, fixture="psp_encoder_irse50_nc3_s18.pt", manifest="psp_ffhq1024_nc3.json"),
}
# Debug fixture entries and the encoder modules whose outputs they average.
DEBUG_TAPS = {"debug_input_layer_chanmean": "input_layer", "debug_c1_chanmean": "body.6",
              "debug_c2_chanmean": "body.20", "debug_c3_chanmean": "body.23"}


def load_manifest(fixtures_dir, name: str, prefix: str = "") -> dict:
    """Manifest keys/shapes/probes restricted to `prefix` and with it stripped."""
    m = json.loads((fixtures_dir / "manifests" / name).read_text())
    keys = [k[len(prefix):] for k in m["keys"] if k.startswith(prefix)]
    return {"keys": keys, "shapes": {k: m["shapes"][prefix + k] for k in keys},
            "probe": {k: m["fill"]["probe"][prefix + k] for k in keys}, "raw": m}


def assert_layout(sd: dict, man: dict, what: str) -> None:
    got = list(sd)
    assert got == man["keys"], (f"{what}: state_dict keys differ from the manifest; missing "
                                f"{sorted(set(man['keys']) - set(got))[:5]}, unexpected {sorted(set(got) - set(man['keys']))[:5]}")
    bad = {k: (list(v.shape), man["shapes"][k]) for k, v in sd.items() if list(v.shape) != man["shapes"][k]}
    assert not bad, f"{what}: shapes (ours, manifest) differ: {dict(list(bad.items())[:5])}"


def assert_probes(filled: dict, man: dict, what: str) -> None:
    """The fill must reproduce the manifest's [first, last, float64 sum]; else the fill changed, not the model."""
    for k, (first, last, total) in man["probe"].items():
        flat = filled[k].reshape(-1)
        if flat.numel() == 0:
            continue
        assert flat[0].item() == first and flat[-1].item() == last, f"{what}: fill probe of {k} differs"
        assert math.isclose(flat.sum(dtype=torch.float64).item(), total, rel_tol=1e-9, abs_tol=1e-9), f"{what}: fill sum of {k}"


def max_abs(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.fixture(scope="module")
def fill(fixtures_dir):
    from fill import fill_state_dict

    return fill_state_dict


# --------------------------------------------------------------------------- GradualStyleEncoder


@pytest.fixture(scope="module")
def reference_encoder(fixtures_dir, fill):
    """case -> (encoder filled as in the fixture, the filled state_dict, the manifest); each built once,
    because the IR-SE50 encoders take seconds to build and fill on two cores."""
    cache = {}

    def get(name: str):
        if name not in cache:
            case = ENCODER_CASES[name]
            man = load_manifest(fixtures_dir, case["manifest"], prefix="encoder.")
            enc = GradualStyleEncoder(50, "ir_se", n_styles=case["n_styles"], input_nc=case["input_nc"]).eval()
            sd = enc.state_dict()
            assert_layout(sd, man, f"GradualStyleEncoder {name}")
            filled = fill(sd)
            enc.load_state_dict(filled, strict=True)
            cache[name] = enc, filled, man
        return cache[name]

    return get


@pytest.fixture(scope="module", params=list(ENCODER_CASES))
def encoder_run(request, fixtures_dir, reference_encoder):
    """Run one reference encoder once, recording the debug taps; the tests below read the results."""
    enc, filled, man = reference_encoder(request.param)
    fx = torch.load(fixtures_dir / ENCODER_CASES[request.param]["fixture"], weights_only=True)
    means = {}
    modules = dict(enc.named_modules())
    hooks = [modules[name].register_forward_hook(lambda m, i, o, key=key: means.__setitem__(key, o.mean((2, 3))))
             for key, name in DEBUG_TAPS.items()]
    try:
        with torch.no_grad():
            codes = enc(fx["x"])
    finally:
        for h in hooks:
            h.remove()
    return dict(name=request.param, man=man, filled=filled, fx=fx, codes=codes, means=means)


def test_encoder_fill_matches_manifest_probes(encoder_run):
    assert_probes(encoder_run["filled"], encoder_run["man"], encoder_run["name"])


def test_encoder_codes_match_reference(encoder_run):
    codes, ref = encoder_run["codes"], encoder_run["fx"]["codes"]
    assert codes.shape == ref.shape
    err = max_abs(codes, ref)
    print(f"{encoder_run['name']} codes max abs diff {err:.3g}")
    assert err <= 1e-5, f"{encoder_run['name']}: codes differ by {err:.3g} (> 1e-5)"


def test_encoder_intermediate_means_match_reference(encoder_run):
    for key in DEBUG_TAPS:
        err = max_abs(encoder_run["means"][key], encoder_run["fx"][key])
        print(f"{encoder_run['name']} {key} max abs diff {err:.3g}")
        assert err <= 1e-4, f"{encoder_run['name']}: {key} differs by {err:.3g} (> 1e-4)"


@pytest.mark.parametrize("num_layers,units", [(50, 24), (100, 49), (152, 50)])
def test_ir_bodies_tap_the_stage_ends(num_layers, units):
    blocks = get_blocks(num_layers)
    assert len(blocks) == units
    # n_styles=1 keeps construction cheap; the body does not depend on it
    enc = GradualStyleEncoder(num_layers, "ir", n_styles=1, input_nc=3)
    assert len(enc.body) == units
    depth = [b.depth for b in blocks]
    # each tap is the last unit of its stage: the next unit (if any) changes width
    for idx, width in ((enc.c1_index, 128), (enc.c2_index, 256), (enc.c3_index, 512)):
        assert depth[idx] == width and (idx + 1 == units or depth[idx + 1] != width)
    if num_layers == 50:
        assert (enc.c1_index, enc.c2_index, enc.c3_index) == (6, 20, 23)
        # plain 'ir' units are the 'ir_se' units without the squeeze-excitation gate
        se_keys = set(GradualStyleEncoder(num_layers, "ir_se", n_styles=1, input_nc=3).state_dict())
        ir_keys = set(enc.state_dict())
        assert ir_keys < se_keys and all(".res_layer.5.fc" in k for k in se_keys - ir_keys)


def test_gradual_encoder_rejects_wrong_input():
    enc = GradualStyleEncoder(50, "ir_se", n_styles=1, input_nc=1)
    with pytest.raises(ValueError, match=r"\[B, 1, 256, 256\]"):
        enc(torch.zeros(1, 1, 128, 128))
    with pytest.raises(ValueError, match="mode"):
        GradualStyleEncoder(50, "se")
    with pytest.raises(ValueError, match="num_layers"):
        GradualStyleEncoder(34)


# --------------------------------------------------------------------------- full pSp forward


@pytest.fixture(scope="module")
def psp_run(fixtures_dir, fill, reference_encoder):
    """pSp in the sketch setting; its encoder weights are the nc1 encoder fixture's (README), so reuse it."""
    fx = torch.load(fixtures_dir / "psp_sketch256_forward.pt", weights_only=True)
    raw = json.loads((fixtures_dir / "manifests" / "psp_sketch256_nc1.json").read_text())
    encoder, enc_filled, _ = reference_encoder("nc1_s14")
    latent_avg = fill({"latent_avg": torch.zeros(14, 512)}, equalized_lr=True)["latent_avg"]
    net = PSP(encoder, Generator(256), latent_avg).eval()
    assert_layout(net.state_dict(), {"keys": raw["keys"], "shapes": raw["shapes"]}, "PSP(sketch, 256)")
    # fill.py seeds by key, so encoder and decoder are filled without their prefixes (README)
    dec_filled = fill(net.decoder.state_dict(), equalized_lr=True)
    filled = {f"encoder.{k}": v for k, v in enc_filled.items()} | {f"decoder.{k}": v for k, v in dec_filled.items()}
    net.load_state_dict(filled, strict=True)
    captured = {}
    hook = net.encoder.register_forward_hook(lambda m, i, o: captured.__setitem__("codes", o))
    try:
        with torch.no_grad():
            images, latent = net(fx["x"], return_latents=True)
    finally:
        hook.remove()
    return dict(fx=fx, raw=raw, filled=filled, latent_avg=latent_avg, codes=captured["codes"],
                images=images, latent=latent)


def test_psp_fill_hash_matches_manifest(psp_run):
    h = hashlib.sha256()
    for k in psp_run["raw"]["keys"]:
        h.update(k.encode("utf-8") + psp_run["filled"][k].contiguous().numpy().tobytes())
    assert h.hexdigest() == psp_run["raw"]["fill"]["sha256"]
    assert torch.equal(psp_run["latent_avg"], psp_run["fx"]["latent_avg"])


def test_psp_forward_matches_reference(psp_run):
    fx = psp_run["fx"]
    errs = {k: max_abs(psp_run[k], fx[k]) for k in ("codes", "latent", "images")}
    print("pSp sketch256 max abs diffs", {k: f"{v:.3g}" for k, v in errs.items()})
    assert errs["codes"] <= 1e-5 and errs["latent"] <= 1e-5, errs
    assert errs["images"] <= 2e-3, errs


# --------------------------------------------------------------------------- PSP wrapper (small, no fixtures)


@pytest.fixture(scope="module")
def tiny_psp():
    torch.manual_seed(0)
    g = Generator(32, style_dim=64, n_mlp=2, channel_max=32, img_channels=1)
    e = CompactEncoder("resnet18", n_styles=g.n_latent, input_nc=1, style_dim=64, input_size=128)
    return e, g


def test_psp_forward_is_decoder_of_codes_plus_latent_avg_without_noise(tiny_psp):
    e, g = tiny_psp
    w_avg = torch.randn(64)
    net = PSP(e, g, w_avg).eval()
    assert torch.equal(net.latent_avg, w_avg.repeat(g.n_latent, 1))
    assert list(net.state_dict()) == [f"encoder.{k}" for k in e.state_dict()] + [f"decoder.{k}" for k in g.state_dict()]
    x = torch.rand(2, 1, 128, 128)
    with torch.no_grad():
        img1, lat = net(x, return_latents=True)
        img2 = net(x)
        ref, _ = g([e(x) + w_avg], input_is_latent=True, randomize_noise=False)
    assert torch.equal(img1, img2), "PSP output must not flicker between calls (fixed noise)"
    assert torch.equal(img1, ref)
    assert torch.equal(lat, e(x).detach() + w_avg)


def test_psp_latent_avg_is_not_state_but_follows_the_module(tiny_psp):
    e, g = tiny_psp
    net = PSP(e, g, torch.randn(g.n_latent, 64))
    assert not any("latent_avg" in k for k in net.state_dict())
    assert net.double().latent_avg.dtype == torch.float64
    assert net.float().latent_avg.dtype == torch.float32


def test_psp_rejects_mismatched_parts(tiny_psp):
    e, g = tiny_psp
    with pytest.raises(ValueError, match="latent_avg"):
        PSP(e, g, torch.zeros(3, 64))
    with pytest.raises(ValueError, match="n_latent"):
        PSP(CompactEncoder("resnet18", n_styles=g.n_latent + 1, style_dim=64, input_size=128), g, torch.zeros(64))
    with pytest.raises(ValueError, match="style_dim=64"):
        PSP(CompactEncoder("mobilenet_v3_small", n_styles=g.n_latent, style_dim=32, input_size=128), g, torch.zeros(32))


# --------------------------------------------------------------------------- CompactEncoder


@pytest.mark.parametrize("backbone", ["resnet18", "resnet34", "mobilenet_v3_small"])
def test_compact_encoder_shape_and_gradients(backbone):
    enc = CompactEncoder(backbone, n_styles=14, input_nc=1, style_dim=512, input_size=128).train()
    x = torch.rand(2, 1, 128, 128)
    codes = enc(x)
    assert codes.shape == (2, 14, 512)
    codes.square().mean().backward()
    no_grad = [n for n, p in enc.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not no_grad, f"{backbone}: parameters without gradient: {no_grad[:5]}"
    assert json.loads(json.dumps(enc.config)) == enc.config
    assert CompactEncoder(**enc.config).state_dict().keys() == enc.state_dict().keys()


@pytest.mark.parametrize("n_styles,input_size", [(10, 256), (18, 128), (5, 128)])
def test_compact_encoder_style_groups(n_styles, input_size):
    enc = CompactEncoder("mobilenet_v3_small", n_styles=n_styles, input_nc=3, style_dim=64, input_size=input_size)
    assert len(enc.heads) == (3 if n_styles > 7 else 2)
    assert enc.eval()(torch.rand(1, 3, input_size, input_size)).shape == (1, n_styles, 64)


def test_compact_encoder_eval_is_deterministic_and_per_sample():
    enc = CompactEncoder("resnet18", n_styles=14, input_nc=1, input_size=128).eval()
    x = torch.rand(3, 1, 128, 128)
    with torch.no_grad():
        a, b, first = enc(x), enc(x), enc(x[:1])
    assert torch.equal(a, b)
    # eval BatchNorm uses running statistics, so a sample's code does not depend on its batch
    assert max_abs(a[:1], first) < 1e-5
    assert max_abs(a[0], a[1]) > 1e-4, "different sketches must give different codes"


def test_compact_encoder_rejects_bad_arguments():
    with pytest.raises(ValueError, match="backbone"):
        CompactEncoder("vgg16")
    with pytest.raises(ValueError, match="input_size"):
        CompactEncoder(input_size=96)
    enc = CompactEncoder(input_size=128)
    with pytest.raises(ValueError, match=r"\[B, 1, 128, 128\]"):
        enc(torch.zeros(1, 1, 256, 256))
