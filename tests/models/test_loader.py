"""models.load / models.save: format detection, bit-exact round trip, clear errors, fixture parity."""
from __future__ import annotations

import argparse
import pickle
import zipfile

import pytest
import torch

import models
from models.psp import PSP, CompactEncoder, GradualStyleEncoder
from models.sketch_simplifier import SketchSimplifier
from models.stylegan2 import Discriminator, Generator


def tiny_parts(seed=0):
    torch.manual_seed(seed)
    g = Generator(32, style_dim=64, n_mlp=2, channel_max=32, img_channels=1).eval()
    e = CompactEncoder(backbone="resnet18", n_styles=g.n_latent, input_nc=1, style_dim=64, input_size=128).eval()
    lat = torch.randn(g.n_latent, 64)
    return g, e, lat


def test_project_format_roundtrip_is_bit_exact(tmp_path):
    g, e, lat = tiny_parts()
    d = Discriminator(32, channel_max=32, img_channels=1)
    p = models.save(tmp_path / "m.pt", generator=g, encoder=e, discriminator=d, latent_avg=lat, input_size=128,
                    meta={"note": "random init, test only"})
    b = models.load(p, device="cpu")
    assert b.meta["format"] == "newsnow" and b.meta["note"] == "random init, test only"
    for name, m in (("generator", g), ("encoder", e), ("discriminator", d)):
        got = getattr(b, name).state_dict()
        ref = m.state_dict()
        assert list(got) == list(ref)
        for k in ref:
            assert torch.equal(got[k], ref[k]), f"{name}.{k} changed in the round trip"
    assert torch.equal(b.latent_avg, lat)
    assert b.input_size == 128 and b.encoder is not None
    # the rebuilt bundle computes exactly what the original parts compute
    x = torch.rand(2, 1, 128, 128)
    with torch.no_grad():
        ref_img, _ = g([e(x) + lat], input_is_latent=True, randomize_noise=False)
    assert torch.equal(b.sketch_to_image(x), ref_img)
    # saving the loaded bundle again gives the same bytes of weights
    p2 = models.save(tmp_path / "m2.pt", b)
    b2 = models.load(p2, device="cpu")
    assert all(torch.equal(b2.generator.state_dict()[k], v) for k, v in g.state_dict().items())


def test_half_storage_restores_fp32_close(tmp_path):
    g, e, lat = tiny_parts()
    full = models.save(tmp_path / "f.pt", generator=g, encoder=e, latent_avg=lat, input_size=128)
    half = models.save(tmp_path / "h.pt", generator=g, encoder=e, latent_avg=lat, input_size=128, half=True)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    b = models.load(half, device="cpu")
    assert next(b.generator.parameters()).dtype == torch.float32
    x = torch.rand(1, 1, 128, 128)
    ref = models.load(full, device="cpu").sketch_to_image(x)
    assert (b.sketch_to_image(x) - ref).abs().max() < 0.05 * ref.abs().max()


def test_truncated_file_gives_clear_error(tmp_path):
    g, e, lat = tiny_parts()
    p = models.save(tmp_path / "m.pt", generator=g, encoder=e, latent_avg=lat, input_size=128)
    data = p.read_bytes()
    bad = tmp_path / "truncated.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(models.CheckpointError) as ei:
        models.load(bad, device="cpu")
    assert str(bad) in str(ei.value) and "truncated" in str(ei.value)
    empty = tmp_path / "empty.pt"
    empty.write_bytes(b"")
    with pytest.raises(models.CheckpointError, match="empty"):
        models.load(empty)
    with pytest.raises(models.CheckpointError, match="not found"):
        models.load(tmp_path / "nope.pt")


def test_wrong_format_file_names_expected_formats(tmp_path):
    p = tmp_path / "other.pt"
    torch.save({"model": {"fc.weight": torch.zeros(2, 2)}, "epoch": 3}, p)
    with pytest.raises(models.CheckpointError) as ei:
        models.load(p)
    msg = str(ei.value)
    assert str(p) in msg and "unrecognised" in msg and "g_ema" in msg and "'epoch'" in msg
    txt = tmp_path / "notes.pt"
    txt.write_text("hello")
    with pytest.raises(models.CheckpointError, match="not a PyTorch checkpoint"):
        models.load(txt)


def test_pickled_code_is_refused(tmp_path):
    import datetime

    # any class other than argparse.Namespace must never be unpickled (it could run code)
    p = tmp_path / "evil.pt"
    torch.save({"g_ema": {}, "payload": datetime.datetime(2020, 1, 1)}, p, pickle_module=pickle)
    with pytest.raises(models.CheckpointError, match="weights_only"):
        models.load(p)


def test_wrong_shape_lists_the_mismatch(tmp_path):
    g = Generator(32, style_dim=64, n_mlp=2, channel_max=32, img_channels=1)
    sd = g.state_dict()
    sd["convs.0.conv.weight"] = torch.zeros(1, 7, 32, 3, 3)
    p = tmp_path / "bad.pt"
    torch.save({"g_ema": sd, "latent_avg": torch.zeros(64),
                "config": {"generator": g.config}}, p)
    with pytest.raises(models.CheckpointError) as ei:
        models.load(p)
    msg = str(ei.value)
    assert "convs.0.conv.weight" in msg and "[1, 7, 32, 3, 3]" in msg and "shape mismatches" in msg
    del sd["convs.0.conv.weight"]
    torch.save({"g_ema": sd, "config": {"generator": g.config}}, p)
    with pytest.raises(models.CheckpointError, match="missing keys: convs.0.conv.weight"):
        models.load(p)


def test_rosinality_training_checkpoint_with_namespace_args(tmp_path):
    """The trainer's layout: g, d, g_ema, optimisers, args (a Namespace), step, config."""
    g = Generator(32, style_dim=64, n_mlp=2, channel_max=32, img_channels=1)
    d = Discriminator(32, channel_max=32, img_channels=1)
    opt = torch.optim.Adam(g.parameters())
    ckpt = {"g": g.state_dict(), "d": d.state_dict(), "g_ema": g.state_dict(), "g_optim": opt.state_dict(),
            "d_optim": opt.state_dict(), "args": argparse.Namespace(size=32, latent=64, n_mlp=2),
            "step": 7, "latent_avg": torch.randn(64)}
    p = tmp_path / "train.pt"
    torch.save(ckpt, p)
    b = models.load(p, device="cpu")  # no 'config': shapes decide channel_max / img_channels
    assert b.generator.config["channel_max"] == 32 and b.generator.config["img_channels"] == 1
    assert b.discriminator is not None and b.meta["step"] == 7 and b.meta["args"]["size"] == 32
    assert b.latent_avg.shape == (g.n_latent, 64) and b.encoder is None
    with pytest.raises(models.CheckpointError, match="no encoder"):
        b.sketch_to_image(torch.ones(1, 1, 32, 32))


@pytest.mark.parametrize("size,cm", [(256, 1), (512, 2)])
def test_generator_options_inferred_from_shapes(tmp_path, size, cm):
    g = Generator(size, channel_multiplier=cm)
    p = tmp_path / "g.pt"
    torch.save({"g_ema": g.state_dict(), "latent_avg": torch.zeros(512)}, p)
    b = models.load(p, device="cpu")
    assert b.generator.size == size and b.generator.config["channel_multiplier"] == cm


def test_rosinality_g256_fixture_through_loader(tmp_path, fixtures_dir):
    from fill import fill_state_dict

    g = Generator(256)
    sd = fill_state_dict(g.state_dict(), equalized_lr=True)
    p = tmp_path / "converted.pt"
    torch.save({"g_ema": sd, "latent_avg": torch.zeros(512)}, p)
    b = models.load(p, device="cpu")
    fx = torch.load(fixtures_dir / "sg2_generator_256_cm2.pt", weights_only=True)
    with torch.no_grad():
        img = b.synthesize(fx["w_plus"])
    assert torch.allclose(img, fx["img_wplus"], rtol=0, atol=2e-3)


def test_psp_checkpoint_through_loader_matches_fixture(tmp_path, fixtures_dir):
    """The better route from the fixtures README: a real pSp checkpoint file through models.load."""
    from fill import fill_state_dict

    fx = torch.load(fixtures_dir / "psp_sketch256_forward.pt", weights_only=True)
    e = GradualStyleEncoder(50, "ir_se", n_styles=14, input_nc=1)
    g = Generator(256)
    sd = {"encoder." + k: v for k, v in fill_state_dict(e.state_dict()).items()}
    sd |= {"decoder." + k: v for k, v in fill_state_dict(g.state_dict(), equalized_lr=True).items()}
    p = tmp_path / "psp_sketch.pt"
    torch.save({"state_dict": sd, "opts": fx["opts"], "latent_avg": fx["latent_avg"]}, p)
    b = models.load(p, device="cpu")
    assert b.meta["format"] == "psp" and b.input_size == 256 and b.latent_avg.shape == (14, 512)
    x = fx["x"]
    with torch.no_grad():
        w = b.encode(x)
        img = b.synthesize(w)
    assert torch.allclose(w, fx["latent"], rtol=0, atol=1e-5)
    assert torch.allclose(img, fx["images"], rtol=0, atol=2e-3)
    assert torch.equal(b.sketch_to_image(x), img)
    # and the PSP module assembled from the loaded parts has pSp's state_dict layout
    net = PSP(b.encoder, b.generator, b.latent_avg)
    import json

    man = json.loads((fixtures_dir / "manifests" / "psp_sketch256_nc1.json").read_text())
    assert list(net.state_dict()) == man["keys"]


def test_psp_decoder_size_mismatch_is_reported(tmp_path):
    e = GradualStyleEncoder(50, "ir_se", n_styles=14, input_nc=1)
    g = Generator(256)
    sd = {"encoder." + k: v for k, v in e.state_dict().items()}
    sd |= {"decoder." + k: v for k, v in g.state_dict().items()}
    p = tmp_path / "psp.pt"
    torch.save({"state_dict": sd, "opts": {"output_size": 1024, "input_nc": 1, "n_styles": 14},
                "latent_avg": torch.zeros(14, 512)}, p)
    with pytest.raises(models.CheckpointError, match="output_size=1024"):
        models.load(p)


def _compact_psp_ckpt(path, **opts_override):
    g, e, lat = tiny_parts()
    net = PSP(e, g, lat)
    opts = {"encoder_type": "CompactEncoder", "encoder_config": dict(e.config), "generator_config": dict(g.config),
            "input_nc": 1, "n_styles": g.n_latent, "output_size": 32, "input_size": 128}
    opts.update(opts_override)
    torch.save({"state_dict": net.state_dict(), "opts": opts, "latent_avg": lat}, path)
    return net


def test_compact_psp_layout_checkpoint_loads_and_runs(tmp_path):
    net = _compact_psp_ckpt(tmp_path / "psp.pt")
    b = models.load(tmp_path / "psp.pt", device="cpu")
    assert isinstance(b.encoder, CompactEncoder) and b.input_size == 128 and b.generator.size == 32
    x = torch.rand(2, 1, 128, 128)
    with torch.no_grad():
        torch.testing.assert_close(b.sketch_to_image(x), net(x), rtol=0, atol=0)


@pytest.mark.parametrize("override, message", [
    ({"encoder_config": None}, "needs opts.encoder_config"),
    ({"encoder_config": [1, 2]}, "opts.encoder_config must be a dict"),
    ({"encoder_config": {"backbone": "vgg11"}}, "does not build a CompactEncoder"),
    ({"generator_config": {"size": 32, "style_dim": 64, "bogus": 1}}, "does not build a Generator"),
    ({"encoder_type": "BackboneEncoderUsingLastLayerIntoW"}, "supported: GradualStyleEncoder, CompactEncoder"),
])
def test_compact_psp_layout_bad_opts_are_named(tmp_path, override, message):
    _compact_psp_ckpt(tmp_path / "psp.pt", **override)
    with pytest.raises(models.CheckpointError, match=message) as e:
        models.load(tmp_path / "psp.pt")
    assert "psp.pt" in str(e.value)


def test_sketch_simplifier_state_dict_is_detected(tmp_path):
    s = SketchSimplifier()
    p = tmp_path / "model_gan.pth"
    torch.save(s.state_dict(), p)
    b = models.load(p, device="cpu")
    assert isinstance(b.simplifier, SketchSimplifier) and b.generator is None
    assert b.meta["format"] == "sketch_simplification"


def test_sketch_shape_is_checked(tmp_path):
    g, e, lat = tiny_parts()
    b = models.load(models.save(tmp_path / "m.pt", generator=g, encoder=e, latent_avg=lat, input_size=128))
    with pytest.raises(ValueError, match=r"\[B, 1, 128, 128\]"):
        b.sketch_to_image(torch.ones(1, 1, 64, 64))
    with pytest.raises(ValueError, match="fp16"):
        models.load(tmp_path / "m.pt", device="cpu", fp16=True)


def test_saved_file_is_a_zip_written_atomically(tmp_path):
    g, e, lat = tiny_parts()
    p = models.save(tmp_path / "m.pt", generator=g, latent_avg=lat)
    assert zipfile.is_zipfile(p)
    assert not list(tmp_path.glob(".*.tmp"))  # no temporary leftovers
