"""`python -m editing <method>`: the files each method writes hold what the library computes, every method
reads its generator through models.load, and no editing module has a loader of its own."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import models
from common.paths import REPO_ROOT
from editing import cli, ganspace, interfacegan, nrsfm
from editing.sampling import load_generator, sample_latents


@pytest.fixture
def counted_loads(monkeypatch):
    """Wrap models.load to count the calls the CLI makes."""
    calls = []
    real = models.load

    def load(path, *args, **kwargs):
        calls.append(Path(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(models, "load", load)
    return calls


def run(method, ckpt, out, *extra):
    assert cli.main([method, "--checkpoint", str(ckpt), "--out", str(out), "--n-show", "1", "--steps", "3",
                     "--log-level", "WARNING", *extra]) == 0
    return json.loads((out / "summary.json").read_text())


def grid_shape_ok(path: Path, rows: int, cols: int, tile: int):
    w, h = Image.open(path).size
    assert w >= cols * tile and h >= rows * tile


def test_ganspace_cli_writes_the_fitted_directions_and_a_grid(tiny_generator_path, tmp_path, counted_loads):
    summary = run("ganspace", tiny_generator_path, tmp_path, "--n-samples", "300", "--n-components", "4",
                  "--n-directions", "2", "--layers", "0:3")
    assert counted_loads == [tiny_generator_path]
    saved = ganspace.GanspaceModel.load(tmp_path / "ganspace.npz")
    _, w = sample_latents(load_generator(tiny_generator_path), 300, seed=0, progress=False)
    comps, stds = ganspace.fit(w, 4)
    np.testing.assert_allclose(saved.components, comps, atol=1e-5)
    np.testing.assert_allclose(saved.stds, stds, rtol=1e-5)
    assert summary["layers"] == [0, 3]
    grid_shape_ok(tmp_path / "ganspace_grid_0.png", 2, 3, 96)


def test_interfacegan_cli_writes_unit_boundaries_with_condition(tiny_generator_path, tmp_path, counted_loads):
    summary = run("interfacegan", tiny_generator_path, tmp_path, "--n-samples", "200", "--ratio", "0.1",
                  "--attribute", "ink", "--condition", "ink_top")
    assert len(counted_loads) == 1
    b = interfacegan.load_boundary(tmp_path / "boundary_ink.npy", dim=64)
    c = interfacegan.load_boundary(tmp_path / "boundary_ink_cond_ink_top.npy", dim=64)
    assert np.load(tmp_path / "boundary_ink.npy").shape == (1, 64)
    assert (b @ c.T).item() > 0 and summary["fits"]["ink"]["n_per_class"] == 20
    grid_shape_ok(tmp_path / "interfacegan_grid_0.png", 2, 3, 96)


def test_sefa_and_resefa_cli(tiny_generator_path, tmp_path, counted_loads):
    run("sefa", tiny_generator_path, tmp_path / "s", "--n-samples", "100", "--sefa-layers", "0,1,2",
        "--n-directions", "2")
    with np.load(tmp_path / "s" / "sefa.npz") as z:
        assert z["directions"].shape == (64, 64) and z["layers"].tolist() == [0, 1, 2]
        assert np.all(np.diff(z["values"]) <= 1e-9)
    summary = run("resefa", tiny_generator_path, tmp_path / "r", "--n-samples", "50", "--n-jacobians", "1",
                  "--n-directions", "2", "--region", "0,0,0.5,0.5")
    assert summary["foreground_pixels"] == 16 * 16 and len(summary["ratios"]) == 2
    assert len(counted_loads) == 2


def test_tensor_model_cli_on_a_latent_file(tiny_generator_path, tmp_path):
    rng = np.random.default_rng(0)
    lat = rng.normal(size=(4, 3, 3, 64)).astype(np.float32)           # person x expression x intensity x W
    np.savez(tmp_path / "lat.npz", latents=lat, modes=np.array(["person", "expression", "intensity"]))
    summary = run("tensor_model", tiny_generator_path, tmp_path / "o", "--latents", str(tmp_path / "lat.npz"),
                  "--rank", "intensity=2", "--expression-names", "a,b,c")
    with np.load(tmp_path / "o" / "tensor_model.npz") as z:
        assert z["directions"].shape == (3, 8, 64)                     # broadcast to the 8 W+ layers
    assert summary["ranks"] == {"intensity": 2}


def test_nrsfm_cli_with_ink_landmarks(tiny_generator_path, tmp_path):
    summary = run("nrsfm", tiny_generator_path, tmp_path, "--n-samples", "60", "--n-basis", "1", "--epochs", "3",
                  "--n-landmarks", "8", "--params", "theta_z,alpha_1")
    model = nrsfm.SparseModel.load(tmp_path / "nrsfm_model.npz")
    assert model.n_landmarks == 8 and model.n_basis == 1
    assert summary["frames"] > 10 and len(summary["achieved_steps_sd"]) == 2 * 3
    import torch

    reg = torch.load(tmp_path / "nrsfm_regressor.pt", weights_only=True)
    assert reg["param_names"] == nrsfm.param_names(1)


def test_cli_errors_are_actionable(tiny_generator_path, tmp_path):
    with pytest.raises(SystemExit, match="--layers"):
        cli.main(["ganspace", "--checkpoint", str(tiny_generator_path), "--out", str(tmp_path), "--layers", "3:99"])
    with pytest.raises(models.CheckpointError, match="not found"):
        cli.main(["sefa", "--checkpoint", str(tmp_path / "missing.pt"), "--out", str(tmp_path)])


def test_no_editing_module_has_its_own_loader():
    """Acceptance 3: checkpoints reach editing only through models.load (in editing.sampling)."""
    offenders = []
    for path in sorted((REPO_ROOT / "editing").glob("*.py")):
        text = path.read_text()
        for pattern in (r"torch\.load\(", r"load_state_dict\(", r"(?<!torch\.)\bGenerator\(", r"models\.load\("):
            if re.search(pattern, text) and not (path.name == "sampling.py" and pattern == r"models\.load\("):
                offenders.append(f"{path.name}: {pattern}")
    assert offenders == []
    assert "models.load(" in (REPO_ROOT / "editing" / "sampling.py").read_text()


def test_grid_edits_move_only_the_chosen_layers_by_step_times_sigma():
    dirs = np.eye(4)[:2]
    edits = cli._direction_edits(dirs, np.array([2.0, 0.5]), np.array([-1.0, 0.0, 3.0]), [1, 3])
    wp = np.arange(5 * 4, dtype=float).reshape(1, 5, 4)
    out = edits(wp)
    assert out.shape == (6, 5, 4)                      # rows x columns
    delta = out - wp
    assert np.all(delta[:, [0, 2, 4]] == 0)
    np.testing.assert_allclose(delta[:, 1], [[-2, 0, 0, 0], [0, 0, 0, 0], [6, 0, 0, 0],
                                             [0, -0.5, 0, 0], [0, 0, 0, 0], [0, 1.5, 0, 0]])
    np.testing.assert_allclose(delta[:, 3], delta[:, 1])


def test_hspace_is_dispatched_to_its_own_cli(capsys):
    pytest.importorskip("editing.hspace.cli", reason="editing/hspace (diffusion h-space) is not present")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["hspace", "--help"])
    assert exit_info.value.code == 0
    assert "python -m editing hspace" in capsys.readouterr().out
