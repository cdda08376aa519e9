"""StyleGAN2 ops and networks against a direct float64 definition, planted properties and the rosinality fixtures.

The fixture tests (../shared/fixtures, see its README) load the deterministic fill into our models with
strict=True and compare every stored output at the README's tolerances; they skip when ../shared is absent.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
from contextlib import contextmanager

import pytest
import torch

from models.ops import FusedLeakyReLU, fused_leaky_relu, upfirdn2d
from models.stylegan2 import Discriminator, Generator

G_MANIFESTS = [f"sg2_generator_{size}_cm{cm}.json" for size in (256, 512, 1024) for cm in (1, 2)]
D_MANIFESTS = ["sg2_discriminator_256_cm2.json", "sg2_discriminator_1024_cm2.json"]


def assert_close(name: str, got: torch.Tensor, ref: torch.Tensor, atol: float) -> None:
    """allclose(rtol=0) with the max abs difference printed (pytest -s) and named on failure."""
    assert got.shape == ref.shape, f"{name}: shape {tuple(got.shape)} != reference {tuple(ref.shape)}"
    diff = (got.double() - ref.double()).abs().max().item()
    print(f"{name}: max |diff| = {diff:.3g} (atol {atol:g}, reference max |x| = {ref.abs().max().item():.3g})")
    assert diff <= atol, f"{name}: max |diff| {diff:.3g} > atol {atol:g}"


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


# ----------------------------------------------------------------------------------------------- ops

def upfirdn2d_direct(x, kernel, up, down, pad):
    """float64 transcription of the definition, sample by sample: zero-insert, pad/crop, true convolution
    (kernel index kh-1-t), keep every `down`-th output."""
    x0, x1, y0, y1 = pad if len(pad) == 4 else (pad[0], pad[1], pad[0], pad[1])
    x, kernel = x.double(), kernel.double()
    batch, channels, h, w = x.shape
    kh, kw = kernel.shape
    ph, pw = h * up + y0 + y1, w * up + x0 + x1
    padded = torch.zeros(batch, channels, ph, pw, dtype=torch.float64)
    for py in range(ph):
        for px in range(pw):
            uy, ux = py - y0, px - x0  # position on the zero-inserted grid
            if 0 <= uy < h * up and 0 <= ux < w * up and uy % up == 0 and ux % up == 0:
                padded[:, :, py, px] = x[:, :, uy // up, ux // up]
    out = torch.zeros(batch, channels, (ph - kh) // down + 1, (pw - kw) // down + 1, dtype=torch.float64)
    for oy in range(out.shape[2]):
        for ox in range(out.shape[3]):
            for ty in range(kh):
                for tx in range(kw):
                    out[:, :, oy, ox] += (padded[:, :, oy * down + ty, ox * down + tx]
                                          * kernel[kh - 1 - ty, kw - 1 - tx])
    return out


# (up, down, pad): the four the models use with the 4-tap kernel first, then other combinations
UPFIRDN_CASES = [(2, 1, (2, 1)), (1, 1, (1, 1)), (1, 1, (2, 2)), (1, 2, (1, 1)),
                 (2, 2, (1, 2)), (1, 2, (0, 0)), (3, 1, (-1, 2)), (1, 1, (2, 0, -1, 3)), (2, 3, (0, 1, 3, -2))]


@pytest.mark.parametrize("up,down,pad", UPFIRDN_CASES)
def test_upfirdn2d_matches_direct_definition(up, down, pad):
    x = torch.randn(2, 3, 7, 9, dtype=torch.float64)
    kernel = torch.rand(4, 3, dtype=torch.float64)  # non-symmetric and non-square: flips and axes matter
    ref = upfirdn2d_direct(x, kernel, up, down, pad)
    assert_close(f"upfirdn2d float64 up={up} down={down} pad={pad}", upfirdn2d(x, kernel, up, down, pad), ref, 1e-12)
    got32 = upfirdn2d(x.float(), kernel.float(), up, down, pad)
    assert got32.dtype == torch.float32
    assert_close(f"upfirdn2d float32 up={up} down={down} pad={pad}", got32, ref, 1e-5)


def test_upfirdn2d_is_a_true_convolution():
    """An impulse must come out as the kernel itself (a correlation would give it flipped)."""
    kernel = torch.arange(1.0, 13.0).view(3, 4)
    x = torch.zeros(1, 1, 6, 6)
    x[0, 0, 2, 2] = 1
    out = upfirdn2d(x, kernel, pad=(3, 3, 2, 2))  # full convolution
    assert torch.equal(out[0, 0, 2:5, 2:6], kernel)
    assert out.sum() == kernel.sum()


def test_upfirdn2d_low_precision_dtypes():
    x = torch.randn(1, 2, 8, 8)
    kernel = torch.rand(4, 4)
    ref = upfirdn2d_direct(x, kernel, 2, 1, (2, 1))
    for dtype, atol in ((torch.bfloat16, 0.1), (torch.float16, 0.01)):
        out = upfirdn2d(x.to(dtype), kernel, up=2, pad=(2, 1))
        assert out.dtype == dtype
        assert_close(f"upfirdn2d {dtype}", out, ref, atol)


def test_upfirdn2d_rejects_bad_arguments():
    with pytest.raises(ValueError, match=r"x must be \[B, C, H, W\]"):
        upfirdn2d(torch.zeros(3, 8, 8), torch.ones(2, 2))
    with pytest.raises(ValueError, match="pad must have 2 or 4 entries"):
        upfirdn2d(torch.zeros(1, 1, 8, 8), torch.ones(2, 2), pad=(1, 1, 1))
    with pytest.raises(ValueError, match="smaller than the kernel"):
        upfirdn2d(torch.zeros(1, 1, 3, 3), torch.ones(4, 4), pad=(-1, 0))


def test_fused_leaky_relu():
    x = torch.randn(2, 5, 3, 4, dtype=torch.float64)
    bias = torch.randn(5, dtype=torch.float64)
    y = x + bias.view(1, 5, 1, 1)
    expected = torch.where(y >= 0, y, 0.2 * y) * math.sqrt(2)
    assert_close("fused_leaky_relu 4-D", fused_leaky_relu(x, bias), expected, 1e-12)
    z = torch.randn(3, 5, dtype=torch.float64)
    assert_close("fused_leaky_relu 2-D, slope 0.1, scale 1", fused_leaky_relu(z, bias, 0.1, 1.0),
                 torch.where(z + bias >= 0, z + bias, 0.1 * (z + bias)), 1e-12)
    with pytest.raises(ValueError, match="must be \\[C\\]"):
        fused_leaky_relu(x, torch.zeros(4))

    act = FusedLeakyReLU(5)
    assert [name for name, _ in act.named_parameters()] == ["bias"]
    assert list(FusedLeakyReLU(5, bias=False).parameters()) == []


# ------------------------------------------------------------------------------------ manifests

@pytest.fixture(scope="module")
def fill(fixtures_dir):
    from fill import fill_state_dict
    return fill_state_dict


def load_manifest(fixtures_dir, name):
    return json.loads((fixtures_dir / "manifests" / name).read_text())


def model_from_manifest(name: str):
    kind, size, cm = re.fullmatch(r"sg2_(generator|discriminator)_(\d+)_cm(\d)\.json", name).groups()
    if kind == "generator":
        return Generator(int(size), 512, 8, channel_multiplier=int(cm))
    return Discriminator(int(size), channel_multiplier=int(cm))


def filled(model, fill):
    model.load_state_dict(fill(model.state_dict(), equalized_lr=True), strict=True)
    return model.eval()


@pytest.mark.parametrize("name", G_MANIFESTS + D_MANIFESTS)
def test_state_dict_matches_reference_manifest(fixtures_dir, fill, name):
    """Same keys in the same order, shapes, dtypes; the fill lands on the same numbers (probes + sha256)."""
    man = load_manifest(fixtures_dir, name)
    sd = model_from_manifest(name).state_dict()
    keys = list(sd)
    if keys != man["keys"]:
        i = next(i for i, (a, b) in enumerate(zip(keys + [None], man["keys"] + [None])) if a != b)
        pytest.fail(f"{name}: keys differ from position {i}: ours {keys[i:i + 3]}, reference {man['keys'][i:i + 3]}")
    assert {k: list(v.shape) for k, v in sd.items()} == man["shapes"]
    assert {k: str(v.dtype).removeprefix("torch.") for k, v in sd.items()} == man["dtypes"]

    sd_filled = fill(sd, equalized_lr=True)
    digest = hashlib.sha256()
    for key in man["keys"]:
        t = sd_filled[key]
        flat = t.flatten()
        first, last, total = man["fill"]["probe"][key]
        assert (flat[0].item(), flat[-1].item()) == (first, last), f"{name}: fill probe of {key}"
        assert math.isclose(flat.double().sum().item(), total, rel_tol=1e-9, abs_tol=1e-6), f"{name}: sum of {key}"
        digest.update(key.encode("utf-8") + t.contiguous().numpy().tobytes())
    assert digest.hexdigest() == man["fill"]["sha256"]


# ---------------------------------------------------------------------------------- fixtures 256

@contextmanager
def recording_skips(G):
    """The running RGB skip after to_rgb1 and each to_rgbs[i], captured with forward hooks."""
    skips = []
    handles = [m.register_forward_hook(lambda _m, _inp, out: skips.append(out)) for m in (G.to_rgb1, *G.to_rgbs)]
    try:
        yield skips
    finally:
        for h in handles:
            h.remove()


@pytest.fixture(scope="module")
def g256(fill):
    return filled(Generator(256, 512, 8, channel_multiplier=2), fill)


@pytest.fixture(scope="module")
def fx_g256(fixtures_dir):
    return torch.load(fixtures_dir / "sg2_generator_256_cm2.pt", weights_only=True)


def test_g256_mapping_and_mean_latent(g256, fx_g256):
    with torch.no_grad():
        assert_close("G256 w_z = G.style(z)", g256.style(fx_g256["z"]), fx_g256["w_z"], 1e-4)
        assert_close("G256 get_latent(z)", g256.get_latent(fx_g256["z"]), fx_g256["w_z"], 1e-4)
        # the default generator seeded 1002 yields the same stream as the fixture's Generator(1002)
        torch.manual_seed(1002)
        assert_close("G256 mean_latent(4096)", g256.mean_latent(4096), fx_g256["mean_latent"], 1e-4)


def test_g256_wplus_image_and_skips(g256, fx_g256):
    with torch.no_grad(), recording_skips(g256) as skips:
        img, latent = g256([fx_g256["w_plus"]], input_is_latent=True, randomize_noise=False)
    assert latent is None
    assert len(skips) == len(fx_g256["skips_wplus"]) == 7
    for own, ref in zip(skips, fx_g256["skips_wplus"]):
        assert_close(f"G256 skip at {ref.shape[-1]} px", own, ref, 2e-3)
    assert_close("G256 img_wplus", img, fx_g256["img_wplus"], 2e-3)


def test_g256_z_image(g256, fx_g256):
    with torch.no_grad():
        img, latent = g256([fx_g256["z"]], input_is_latent=False, randomize_noise=False, truncation=1,
                           return_latents=True)
    assert_close("G256 latent_z", latent, fx_g256["latent_z"], 1e-4)
    assert_close("G256 img_z", img, fx_g256["img_z"], 2e-3)


def test_g256_truncated_image(g256, fx_g256):
    with torch.no_grad():
        img, latent = g256([fx_g256["z"]], truncation=0.7, truncation_latent=fx_g256["mean_latent"],
                           randomize_noise=False, return_latents=True)
    assert_close("G256 latent_trunc", latent, fx_g256["latent_trunc"], 1e-4)
    assert_close("G256 img_trunc", img, fx_g256["img_trunc"], 2e-3)


@pytest.fixture(scope="module")
def d256(fill):
    return filled(Discriminator(256, channel_multiplier=2), fill)


def test_d256_logits(fixtures_dir, d256, fx_g256):
    fx = torch.load(fixtures_dir / "sg2_discriminator_256_cm2.pt", weights_only=True)
    inputs = {
        "logits_img_z": fx_g256["img_z"],
        "logits_img_wplus": fx_g256["img_wplus"],
        "logits_img_trunc": fx_g256["img_trunc"],
        "logits_img_wplus_first_only": fx_g256["img_wplus"][:1],
        "logits_randn": torch.randn(2, 3, 256, 256, generator=seeded(fx["x_randn_seed"])),
    }
    with torch.no_grad():
        for key, img in inputs.items():
            assert_close(f"D256 {key}", d256(img), fx[key], 5e-4)


# --------------------------------------------------------------------------------- fixtures 1024

@pytest.fixture(scope="module")
def fx_g1024(fixtures_dir):
    return torch.load(fixtures_dir / "sg2_generator_1024_cm2.pt", weights_only=True)


@pytest.mark.slow
def test_g1024_wplus_image(fill, fx_g1024):
    G = filled(Generator(1024, 512, 8, channel_multiplier=2), fill)
    assert G.n_latent == 18
    with torch.no_grad():
        assert_close("G1024 w_z", G.style(fx_g1024["z"]), fx_g1024["w_z"], 1e-4)
        with recording_skips(G) as skips:
            img, _ = G([fx_g1024["w_plus"]], input_is_latent=True, randomize_noise=False)
    for own, ref in zip(skips, fx_g1024["skips_wplus"]):  # the fixture keeps 4..256 px
        assert_close(f"G1024 skip at {ref.shape[-1]} px", own, ref, 2e-3)
    assert_close("G1024 img_wplus[..., ::4, ::4]", img[..., ::4, ::4], fx_g1024["img_wplus_s4"], 2e-3)
    assert_close("G1024 img_wplus vs float16 copy", img, fx_g1024["img_wplus_f16"].float(), 0.05)


@pytest.mark.slow
def test_d1024_logits(fixtures_dir, fill, fx_g1024):
    """One input is enough here: the 256 test covers the other inputs through the same code."""
    fx = torch.load(fixtures_dir / "sg2_discriminator_1024_cm2.pt", weights_only=True)
    D = filled(Discriminator(1024, channel_multiplier=2), fill)
    with torch.no_grad():
        assert_close("D1024 logits_img_wplus_f16", D(fx_g1024["img_wplus_f16"].float()),
                     fx["logits_img_wplus_f16"], 5e-4)


# ---------------------------------------------------------------------------- small configurations

SMALL = dict(size=32, style_dim=64, n_mlp=2, channel_max=64, img_channels=1)


@pytest.fixture()
def one_thread():
    """Tiny models gain nothing from a second thread, and on a busy machine every op then waits for it."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture()
def small_g(one_thread):
    G = Generator(**SMALL).eval()
    with torch.no_grad():  # noise strengths start at 0; make the noise visible in the output
        for name, p in G.named_parameters():
            if name.endswith("noise.weight"):
                p.fill_(0.5)
    return G


def test_small_generator_shapes_and_config(small_g):
    G = small_g
    assert (G.n_latent, G.num_layers) == (8, 7)
    assert G.channels == {4: 64, 8: 64, 16: 64, 32: 64}
    assert max(p.shape[0] for n, p in G.named_parameters() if n.endswith("activate.bias")) == 64
    assert G.to_rgb1.bias.shape == (1, 1, 1, 1)
    z = torch.randn(3, 64)
    img, latent = G([z], return_latents=True)
    assert img.shape == (3, 1, 32, 32) and latent.shape == (3, 8, 64)
    assert [tuple(n.shape) for n in G.make_noise()] == [tuple(b.shape) for b in G.noises.buffers()]

    config = json.loads(json.dumps(G.config))
    assert config == {**SMALL, "channel_multiplier": 2, "blur_kernel": [1, 3, 3, 1], "lr_mlp": 0.01}
    rebuilt = Generator(**config)
    rebuilt.load_state_dict(G.state_dict(), strict=True)
    with torch.no_grad():
        assert torch.equal(rebuilt([z], randomize_noise=False)[0], G([z], randomize_noise=False)[0])


def test_style_mixing(small_g):
    G = small_g
    z1, z2 = torch.randn(2, 64), torch.randn(2, 64)
    with torch.no_grad():
        w1, w2 = G.style(z1), G.style(z2)
        img, latent = G([z1, z2], inject_index=3, return_latents=True, randomize_noise=False)
        assert torch.equal(latent[:, :3], w1.unsqueeze(1).expand(-1, 3, -1))
        assert torch.equal(latent[:, 3:], w2.unsqueeze(1).expand(-1, 5, -1))
        # the synthesis sees exactly that W+
        assert torch.equal(img, G([latent], input_is_latent=True, randomize_noise=False)[0])

        seen = set()
        for _ in range(30):
            _, latent = G([w1, w2], input_is_latent=True, return_latents=True, randomize_noise=False)
            switch = [(latent[0, i] == w1[0]).all().item() for i in range(G.n_latent)]
            k = switch.index(False)
            assert all(switch[:k]) and not any(switch[k:]), "mixing must switch once, from w1 to w2"
            seen.add(k)
        assert seen <= set(range(1, G.n_latent)) and len(seen) > 3  # random in [1, n_latent)


def test_truncation(small_g):
    G = small_g
    z = torch.randn(2, 64)
    with torch.no_grad():
        centre = G.mean_latent(256)
        plain, w = G([z], randomize_noise=False, return_latents=True)
        same, _ = G([z], truncation=1, truncation_latent=centre, randomize_noise=False)
        assert torch.equal(plain, same)
        _, half = G([z], truncation=0.5, truncation_latent=centre, randomize_noise=False, return_latents=True)
        assert torch.allclose(half, centre + 0.5 * (w - centre), atol=1e-6)
        _, collapsed = G([z], truncation=0, truncation_latent=centre, randomize_noise=False, return_latents=True)
        assert torch.allclose(collapsed, centre.expand_as(collapsed), atol=1e-6)


def test_noise_modes(small_g):
    G = small_g
    w = torch.randn(2, G.n_latent, 64)
    with torch.no_grad():
        fixed1, _ = G([w], input_is_latent=True, randomize_noise=False)
        fixed2, _ = G([w], input_is_latent=True, randomize_noise=False)
        assert torch.equal(fixed1, fixed2)
        buffers = [getattr(G.noises, f"noise_{i}") for i in range(G.num_layers)]
        assert torch.equal(G([w], input_is_latent=True, noise=buffers)[0], fixed1)
        random1, _ = G([w], input_is_latent=True)
        random2, _ = G([w], input_is_latent=True)
        assert (random1 - random2).abs().max() > 1e-2
        assert (random1 - fixed1).abs().max() > 1e-2


def test_generator_input_errors(small_g):
    G = small_g
    z = torch.randn(2, 64)
    with pytest.raises(TypeError, match=r"list of 1 or 2 tensors, e\.g\. G\(\[z\]\)"):
        G(z)
    with pytest.raises(TypeError, match="got list of length 3"):
        G([z, z, z])
    with pytest.raises(ValueError, match=re.escape("styles[0] must be [B, 64] or W+ [B, 8, 64]")):
        G([torch.randn(2, 7, 64)], input_is_latent=True)
    with pytest.raises(ValueError, match=re.escape("styles[0] must be [B, 64] (input_is_latent=False")):
        G([torch.randn(2, 8, 64)])
    with pytest.raises(ValueError, match=re.escape("styles[1] must be [B, 64]")):
        G([z, torch.randn(2, 32)])
    with pytest.raises(ValueError, match="needs truncation_latent"):
        G([z], truncation=0.7)
    with pytest.raises(ValueError, match=re.escape("inject_index must be in [0, 8]")):
        G([z, z], inject_index=9)
    with pytest.raises(ValueError, match="noise must hold 7 maps"):
        G([z], noise=[None] * 6)
    for size in (4, 48, 100):
        with pytest.raises(ValueError, match="power of two >= 8"):
            Generator(size)


@pytest.mark.usefixtures("one_thread")
def test_small_discriminator_and_minibatch_stddev():
    D = Discriminator(32, channel_max=64, img_channels=1).eval()
    assert json.loads(json.dumps(D.config)) == dict(size=32, channel_multiplier=2, blur_kernel=[1, 3, 3, 1],
                                                    channel_max=64, img_channels=1)
    x = torch.randn(8, 1, 32, 32)
    with torch.no_grad():
        logits = D(x)
        assert logits.shape == (8, 1)
        # groups of min(B, 4) are strided: with B = 8, samples 0, 2, 4, 6 form one group
        assert torch.allclose(logits[0::2], D(x[0::2]), atol=1e-5)
        assert not torch.allclose(logits[0::2], D(x[:4]), atol=1e-3)
        # and the group statistic matters: one sample alone scores differently
        assert not torch.allclose(D(x[:1]), D(x[:2])[:1], atol=1e-4)
    with pytest.raises(ValueError, match=re.escape("must be [B, 1, 32, 32], got (2, 3, 32, 32)")):
        D(torch.randn(2, 3, 32, 32))
    with pytest.raises(ValueError, match="batch size 6 must be divisible"):
        D(torch.randn(6, 1, 32, 32))


@pytest.mark.usefixtures("one_thread")
def test_gradients_for_training():
    """R1 and path-length regularisers differentiate through D's input and G's W: double backward must work."""
    G = Generator(16, style_dim=32, n_mlp=2, channel_max=32, img_channels=1)
    D = Discriminator(16, channel_max=32, img_channels=1)
    img, latent = G([torch.randn(2, 32)], return_latents=True)
    (grad_w,) = torch.autograd.grad(img.sum(), latent, create_graph=True)
    real = torch.randn(2, 1, 16, 16, requires_grad=True)
    (grad_real,) = torch.autograd.grad(D(real).sum(), real, create_graph=True)
    (grad_real.pow(2).sum() + grad_w.pow(2).sum() + D(img).sum()).backward()
    for name, p in [*G.named_parameters(), *D.named_parameters()]:
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.usefixtures("one_thread")
def test_float64_and_other_blur_kernel():
    torch.manual_seed(1)
    G = Generator(16, style_dim=32, n_mlp=2, channel_max=32, blur_kernel=(1, 2, 1)).eval()
    D = Discriminator(16, channel_max=32, blur_kernel=(1, 2, 1)).eval()
    w = torch.randn(2, G.n_latent, 32)
    with torch.no_grad():
        img32, _ = G([w], input_is_latent=True, randomize_noise=False)
        img64, _ = G.double()([w.double()], input_is_latent=True, randomize_noise=False)
        assert img32.shape == (2, 3, 16, 16) and img64.dtype == torch.float64
        assert_close("small G float32 vs float64", img32, img64, 1e-4 * img64.abs().max().item())
        assert_close("small D float32 vs float64", D(img32), D.double()(img64), 1e-4)
