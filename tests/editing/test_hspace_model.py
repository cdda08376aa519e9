"""Acceptance on the shipped QuickDraw DDPM: exact zero edit, inversion of real drawings, and directions
that change the drawings measurably, monotonically, and (supervised) in the labelled attribute."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from common.paths import REPO_ROOT
from editing.hspace import Edit, ddim_invert, load_model, sample
from editing.hspace.cli import main as cli_main
from editing.hspace.methods import (find_jacobian, find_pca, find_supervised, ink_coverage, initial_noise,
                                    record_batch, sweep)
from training.train_ddpm import bitmaps_to_model_range

MODEL = REPO_ROOT / "weights" / "ddpm_quickdraw"
STEPS = 10
PCA_GAMMAS = [-1.5, -0.75, 0.0, 0.75, 1.5]   # standard deviations of h_t along the direction
JACOBIAN_GAMMAS = [-4.0, -2.0, 0.0, 2.0, 4.0]  # J1 is a direction h_t varies little along: larger gammas


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def model():
    if not (MODEL / "config.json").is_file():
        pytest.skip(f"{MODEL} is absent: train and export it with training/train_ddpm.py (see its MODEL_CARD.md)")
    return load_model(MODEL)


@pytest.fixture(scope="module")
def batch(model):
    """64 unedited samples with h_t recorded: the fitting set of every direction below."""
    unet, scheduler = model
    return record_batch(unet, scheduler, 64, STEPS, seed=0)


def assert_monotone_and_measurable(grid: torch.Tensor, min_rms: float) -> None:
    """grid [B, 5, 1, H, W] over 5 increasing gammas, the middle one 0: along u = x(last) - x(first) each
    sample moves in gamma's order, its distance from the unedited drawing grows with |gamma| on both
    sides, and the RMS change at the ends (pixels in [-1, 1]) exceeds min_rms on average."""
    change = (grid - grid[:, 2][:, None]).flatten(2)
    u = torch.nn.functional.normalize(change[:, -1] - change[:, 0], dim=1)
    position = (change * u[:, None]).sum(2)  # [B, G]
    assert torch.all(position.diff(dim=1) > 0), position
    rms = change.pow(2).mean(2).sqrt()
    assert torch.all(rms[:, 0] > rms[:, 1]) and torch.all(rms[:, 4] > rms[:, 3]), rms
    assert rms[:, [0, 4]].mean() > min_rms, rms


def test_zero_edit_reproduces_the_shipped_model_samples_exactly(model, batch):
    unet, scheduler = model
    x_T = initial_noise(64, 32, seed=0)[:8]
    direction = find_pca(batch, 1, (0, 1000))[0]
    plain = sample(unet, scheduler, x_T, STEPS).x0
    again = sample(unet, scheduler, x_T, STEPS, Edit(direction.steps, 0.0)).x0
    assert torch.equal(again, plain)
    torch.testing.assert_close(plain, batch.x0[:8], rtol=0, atol=1e-4)  # batch size only changes rounding


def test_ddim_inversion_reconstructs_real_quickdraw_drawings(model, quickdraw_dir):
    # the last drawing of each class: the shipped model's training held out the last 100 per class
    with np.load(quickdraw_dir / "quickdraw_bitmaps_28.npz") as z:
        x0 = bitmaps_to_model_range(np.concatenate([z[k][-2:] for k in z.files]))  # 12 real drawings
    unet, scheduler = model
    x_T = ddim_invert(unet, scheduler, x0, 100)
    back = sample(unet, scheduler, x_T, 100).x0
    rmse = (back - x0).flatten(1).pow(2).mean(1).sqrt()
    flipped = ((back < 0) != (x0 < 0)).float().mean()
    others = torch.cdist(back.flatten(1), x0.flatten(1)) / 32  # RMSE of each reconstruction to every drawing
    # measured at 100 steps: RMSE mean 0.044, max 0.085 (pixels in [-1, 1]); 0.33 % of pixels change side
    assert rmse.mean() < 0.06 and rmse.max() < 0.12, rmse
    assert flipped < 0.005, flipped
    assert torch.equal(others.argmin(1), torch.arange(len(x0)))      # each comes back as itself
    assert torch.all(x_T.flatten(1).std(1) > 0.7)                     # x_T is noise-like, not the drawing


def test_first_pca_direction_changes_drawings_monotonically(model, batch):
    unet, scheduler = model
    pc1 = find_pca(batch, 1, (500, 1000))[0]
    grid = sweep(unet, scheduler, initial_noise(64, 32, seed=0)[:8], STEPS, pc1, PCA_GAMMAS)
    assert_monotone_and_measurable(grid, min_rms=0.15)  # measured 0.32


def test_first_jacobian_direction_changes_drawings_monotonically(model, batch):
    unet, scheduler = model
    rows = [0, 1]
    j1 = find_jacobian(unet, batch, 1, (500, 1000), t_jacobian=700, rows=rows, iters=20)[0]
    grid = sweep(unet, scheduler, initial_noise(64, 32, seed=0)[rows], STEPS, j1, JACOBIAN_GAMMAS)
    assert_monotone_and_measurable(grid, min_rms=0.07)  # measured 0.14 on samples 0-3


def test_supervised_ink_direction_raises_ink_coverage_on_new_samples(model, batch):
    unet, scheduler = model
    directions = find_supervised(batch, ink_coverage(batch.x0), (0, 600))
    mean_diff = directions[0]
    fresh = initial_noise(64, 32, seed=1)  # not the 64 the direction was fitted on
    grid = sweep(unet, scheduler, fresh, STEPS, mean_diff, [0.0, 2.0])
    ink = ink_coverage(grid.flatten(0, 1)).reshape(64, 2)
    raised = (ink[:, 1] > ink[:, 0]).float().mean().item()
    assert raised >= 0.9, f"ink coverage raised for {raised:.0%} of 64 samples"


def test_cli_writes_one_grid_per_shown_sample_and_a_consistent_summary(tmp_path):
    if not (MODEL / "config.json").is_file():
        pytest.skip(f"{MODEL} is absent")
    assert cli_main(["--model", str(MODEL), "--method", "pca", "--out", str(tmp_path), "--n-samples", "16",
                     "--n-show", "2", "--steps", "5", "--k", "2", "--gammas=-2,0,2"]) == 0
    from PIL import Image

    grids = sorted(tmp_path.glob("pca_sample*.png"))
    assert [p.name for p in grids] == ["pca_sample0.png", "pca_sample1.png"]
    w, h = Image.open(grids[0]).size
    assert w > h  # 3 gamma columns (plus the label margin) by 2 direction rows of square tiles
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert list(summary["directions"]) == ["PC1", "PC2"]
    assert all(d["rms_change"][1] == 0.0 and min(d["rms_change"][0], d["rms_change"][2]) > 0
               for d in summary["directions"].values())
    saved = torch.load(tmp_path / "directions.pt", weights_only=True)
    assert set(saved["directions"]["PC1"]) == {801, 601}  # of the 5 timesteps 801, 601, 401, 201, 1
