"""The QuickDraw DDPM trainer: data conventions, exact resume after a stop, diffusers export, config."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from diffusers import DDIMScheduler, UNet2DModel

from common.config import ConfigError, load_config
from common.paths import REPO_ROOT
from training.train_ddpm import (CHECKPOINT, DDPMConfig, bitmaps_to_model_range, export, isolated_ink,
                                 load_bitmaps, load_checkpoint, quality_stats, train)


pytestmark = pytest.mark.usefixtures("one_thread")


def test_bitmaps_become_paper_plus_one_ink_minus_one_padded_with_paper():
    b = np.zeros((2, 28, 28), np.uint8)
    b[0, 0, 0] = 255   # full ink in the top-left corner
    b[1, 10, 20] = 51  # light anti-aliased ink
    x = bitmaps_to_model_range(b)
    assert x.shape == (2, 1, 32, 32) and x.dtype == torch.float32
    assert x[0, 0, 2, 2] == -1.0 and abs(x[1, 0, 12, 22].item() - 0.6) < 1e-6
    border = torch.ones(2, 1, 32, 32, dtype=torch.bool)
    border[..., 2:30, 2:30] = False
    assert torch.all(x[border] == 1.0)
    assert (x == 1.0).sum() == 2 * 32 * 32 - 2


def small_config(quickdraw_dir: Path) -> DDPMConfig:
    cfg = DDPMConfig()
    cfg.data = dataclasses.replace(cfg.data, npz=str(quickdraw_dir / "quickdraw_bitmaps_28.npz"),
                                   classes=["apple", "eye"], holdout_per_class=50)
    cfg.model = dataclasses.replace(cfg.model, block_out_channels=[8, 16], down_block_types=["DownBlock2D"] * 2,
                                    up_block_types=["UpBlock2D"] * 2, norm_num_groups=4)
    cfg.optim = dataclasses.replace(cfg.optim, batch_size=4, warmup_steps=2, max_steps=10)
    cfg.logging = dataclasses.replace(cfg.logging, checkpoint_every=3, sample_every=10**6)
    return cfg


def test_holdout_is_the_tail_of_each_class_and_disjoint_from_training(quickdraw_dir):
    cfg = small_config(quickdraw_dir).data
    train_x, train_y = load_bitmaps(cfg, "train")
    hold_x, hold_y = load_bitmaps(cfg, "holdout")
    assert train_x.shape == (2 * 2950, 1, 32, 32) and hold_x.shape == (100, 1, 32, 32)
    assert torch.equal(torch.bincount(hold_y), torch.tensor([50, 50]))
    with np.load(quickdraw_dir / "quickdraw_bitmaps_28.npz") as z:
        torch.testing.assert_close(hold_x[:50], bitmaps_to_model_range(z["apple"][-50:]))
        torch.testing.assert_close(train_x[2950:], bitmaps_to_model_range(z["eye"][:-50]))
    assert train_x.min() == -1 and train_x.max() == 1
    with pytest.raises(KeyError, match="giraffe"):
        load_bitmaps(dataclasses.replace(cfg, classes=["giraffe"]), "train")


def test_stopping_and_resuming_gives_the_same_weights_as_one_run(quickdraw_dir, tmp_path):
    cfg = small_config(quickdraw_dir)
    straight = train(cfg, tmp_path / "straight")
    train(small_config(quickdraw_dir), tmp_path / "resumed", max_steps=6)  # "killed" after the step-6 checkpoint
    assert torch.load(tmp_path / "resumed" / CHECKPOINT, weights_only=True)["step"] == 6
    resumed = train(small_config(quickdraw_dir), tmp_path / "resumed")

    assert resumed["step"] == straight["step"] == 10
    for name in ("unet", "ema"):
        a, b = straight[name].state_dict(), resumed[name].state_dict()
        assert all(torch.equal(a[k], b[k]) for k in a), name
    on_disk, _ = load_checkpoint(tmp_path / "resumed" / CHECKPOINT)
    raw, ema = on_disk["unet"].state_dict(), on_disk["ema"].state_dict()
    assert all(torch.equal(raw[k], resumed["unet"].state_dict()[k]) for k in raw)
    assert any(not torch.equal(raw[k], ema[k]) for k in raw)  # EMA lags the raw weights: both are tracked


def test_export_writes_a_diffusers_folder_that_loads_offline(quickdraw_dir, tmp_path):
    cfg = small_config(quickdraw_dir)
    state = train(dataclasses.replace(cfg, optim=dataclasses.replace(cfg.optim, max_steps=3)), tmp_path / "run")
    stats = export(tmp_path / "run", tmp_path / "model", n_stats=8, steps=4)

    unet = UNet2DModel.from_pretrained(tmp_path / "model")
    ema = state["ema"].state_dict()
    assert all(torch.equal(unet.state_dict()[k], ema[k]) for k in ema)
    sched = DDIMScheduler.from_pretrained(tmp_path / "model")
    assert sched.config.clip_sample is False and sched.config.num_train_timesteps == 1000
    assert (tmp_path / "model" / "diffusion_pytorch_model.safetensors").is_file()
    assert (tmp_path / "model" / "samples.png").is_file()
    on_disk = json.loads((tmp_path / "model" / "stats.json").read_text())
    assert on_disk == pytest.approx(stats) and on_disk["step"] == 3 and on_disk["n_samples"] == 8


def test_quality_stats_are_zero_distance_for_identical_sets_and_flag_memorisation():
    g = torch.Generator().manual_seed(0)
    train_x = torch.where(torch.rand(50, 1, 8, 8, generator=g) < 0.2, -1.0, 1.0)
    holdout = torch.where(torch.rand(20, 1, 8, 8, generator=g) < 0.2, -1.0, 1.0)
    same = quality_stats(holdout, train_x, holdout)
    assert same["ink_coverage_wasserstein1"] == 0 and same["ink_coverage_samples_mean"] == same["ink_coverage_holdout_mean"]
    copied = quality_stats(train_x[:20], train_x, holdout)  # "samples" that are training images
    assert copied["nn_rmse_samples_to_train_mean"] == 0 and copied["fraction_samples_closer_to_train_than_min_holdout_nn"] == 1


def test_isolated_ink_counts_lone_pixels_not_strokes():
    x = torch.ones(2, 1, 8, 8)
    x[0, 0, 4, 1:7] = -1.0                 # a stroke: no pixel is alone
    x[1, 0, 1, 1] = x[1, 0, 5, 5] = -1.0   # two lone dots ...
    x[1, 0, 2, 5:7] = -1.0                 # ... and a 2-pixel dash
    torch.testing.assert_close(isolated_ink(x), torch.tensor([0.0, 0.5]))


def test_shipped_config_parses_and_unknown_keys_are_named(tmp_path):
    cfg = load_config(REPO_ROOT / "configs" / "ddpm_quickdraw.yaml", DDPMConfig)
    assert cfg.model.block_out_channels == [16, 32, 64] and cfg.schedule.num_train_timesteps == 1000
    bad = tmp_path / "bad.yaml"
    bad.write_text("optim:\n  batchsize: 3\n")
    with pytest.raises(ConfigError, match="optim.batchsize"):
        load_config(bad, DDPMConfig)
