"""pSp encoder training on tiny pairs: it learns, resumes exactly, exports for models.load; LPIPS guard;
the evaluation script."""
from __future__ import annotations

import json

import pytest
import torch

import models
from common.config import from_dict
from models.stylegan2 import Generator
from training import checkpoint as ckpt_io
from training.evaluate import main as evaluate_main
from training.make_sketch_pairs import SketchPairsConfig, SketchPipelineConfig, make_pairs
from training.train_psp import LPIPSWeightsMissing, PSPConfig, PSPTrainer

PIPE = {"work_size": 128, "sketch_size": 128}


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    root = tmp_path_factory.mktemp("psp")
    torch.set_num_threads(1)
    torch.manual_seed(0)
    g = Generator(32, style_dim=32, n_mlp=2, channel_max=16, img_channels=1)
    models.save(root / "g.pt", generator=g, latent_avg=g.mean_latent(256)[0].detach())
    make_pairs(SketchPairsConfig(generator=str(root / "g.pt"), out_dir=str(root / "pairs"), n=12, shard_size=12,
                                 batch=12, pipeline=SketchPipelineConfig(**PIPE)))
    return root


def _cfg(root, out, **kw) -> PSPConfig:
    data = {"generator": str(root / "g.pt"), "pairs": str(root / "pairs"), "out_dir": str(out),
            "encoder": {"kind": "compact", "backbone": "mobilenet_v3_small", "width": 32}, "pipeline": PIPE,
            "batch": 4, "lr": 1e-3, "n_val": 4, "lambda_lpips": 0.0, "lambda_latent": 1.0, "val_every": 1000,
            "snapshot_every": 2, "device": "cpu", "log_every": 1000}
    data.update(kw)
    return from_dict(PSPConfig, data, "test")


def test_tiny_encoder_learns_and_exports(pairs, tmp_path):
    cfg = _cfg(pairs, tmp_path / "run", n_val=8, snapshot_every=100, val_every=12, total_steps=12)
    trainer = PSPTrainer(cfg)                   # 4 training pairs = one batch, seen again every step
    history = trainer.fit()
    assert trainer.step == 12
    first, last = history[0], history[-1]
    assert last["loss"] < 0.5 * first["loss"] and last["latent"] < first["latent"]
    assert (tmp_path / "run" / "val" / "00000012.png").is_file()
    bundle = models.load(tmp_path / "run" / "export.pt", device="cpu")
    assert type(bundle.encoder).__name__ == "CompactEncoder" and bundle.input_size == 128
    x = torch.from_numpy(trainer.data["sketch"][:2]).float().div(255).unsqueeze(1)
    trainer.net.eval()
    with torch.no_grad():
        torch.testing.assert_close(bundle.sketch_to_image(x), trainer.net(x))
    state = models.read_checkpoint(ckpt_io.checkpoint_path(tmp_path / "run" / "checkpoints", 12))
    keys = list(state["state_dict"])
    n_enc = sum(k.startswith("encoder.") for k in keys)
    assert keys[:n_enc] == [k for k in keys if k.startswith("encoder.")] and keys[n_enc].startswith("decoder.")
    assert state["opts"]["encoder_type"] == "CompactEncoder" and state["latent_avg"].shape == (8, 32)
    # the training checkpoint itself (pSp layout) is a model too: models.load gives the same network
    ckpt_bundle = models.load(ckpt_io.checkpoint_path(tmp_path / "run" / "checkpoints", 12), device="cpu")
    assert ckpt_bundle.meta["format"] == "psp" and ckpt_bundle.input_size == 128
    with torch.no_grad():
        torch.testing.assert_close(ckpt_bundle.sketch_to_image(x), trainer.net(x))


def test_psp_resume_is_exact(pairs, tmp_path):
    straight = PSPTrainer(_cfg(pairs, tmp_path / "a"))
    history = straight.fit(max_steps=4)
    resumed = PSPTrainer(_cfg(pairs, tmp_path / "b"))
    resumed.resume(str(ckpt_io.checkpoint_path(tmp_path / "a" / "checkpoints", 2)))
    assert resumed.step == 2
    assert resumed.fit(max_steps=2) == history[2:]


def test_lpips_without_backbone_weights_stops_with_a_clear_message(pairs, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_torch_home"))
    with pytest.raises(LPIPSWeightsMissing, match="lambda_lpips: 0") as e:
        PSPTrainer(_cfg(pairs, tmp_path / "run", lambda_lpips=0.8))
    assert str(tmp_path / "empty_torch_home") in str(e.value)


def test_evaluate_prints_model_and_baseline_figures(pairs, tmp_path, ndjson_dir, capsys):
    trainer = PSPTrainer(_cfg(pairs, tmp_path / "run"))
    trainer.fit(max_steps=2)
    out = tmp_path / "figures.json"
    figures = evaluate_main(["--checkpoint", str(tmp_path / "run" / "export.pt"), "--synthetic", "6",
                             "--quickdraw", str(ndjson_dir), "--json", str(out), "--grid", str(tmp_path / "g.png")])
    assert json.loads(out.read_text()) == figures
    assert figures["synthetic"]["n"] == 6 and figures["quickdraw_holdout"]["n"] == 2
    for row in ("model", "mean image"):
        r = figures["synthetic"][row]
        assert 0 <= r["f_score"] <= 1 and r["l2"] >= 0 and r["chamfer"] >= 0
    assert "| mean image |" in capsys.readouterr().out and (tmp_path / "g.png").is_file()
