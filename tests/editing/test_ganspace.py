"""GANSpace on planted principal directions: components, standard deviations, incremental PCA, edits, files."""
from __future__ import annotations

import numpy as np
import pytest

from editing import ganspace


def planted(n=4000, d=32, sigmas=(5.0, 3.0, 2.0), noise=0.05, seed=0):
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(d, len(sigmas))))[0].T        # (K, D) orthonormal
    mean = rng.normal(size=d)
    coeff = rng.normal(size=(n, len(sigmas)))
    coeff = (coeff - coeff.mean(0)) / coeff.std(0)                       # exactly unit variance
    x = mean + (coeff * np.array(sigmas)) @ basis + noise * rng.normal(size=(n, d))
    return x, basis, np.array(sigmas), mean


@pytest.mark.parametrize("incremental", [False, True])
def test_fit_recovers_planted_components_and_stds(incremental):
    x, basis, sigmas, mean = planted()
    comps, stds = ganspace.fit(x, 3, incremental=incremental, batch_size=500)
    assert comps.shape == (3, 32) and stds.shape == (3,)
    np.testing.assert_allclose(np.linalg.norm(comps, axis=1), 1.0, atol=1e-12)
    cos = np.abs(np.sum(comps * basis, axis=1))
    assert np.all(cos > 0.999), cos
    np.testing.assert_allclose(stds, sigmas, rtol=0.01)
    assert np.all(np.diff(stds) < 0)


def test_sign_convention_is_reproducible():
    x, *_ = planted()
    a, _ = ganspace.fit(x, 3)
    b, _ = ganspace.fit(-x[::-1] * 1.0 + 0.0, 3)      # same data mirrored: same directions up to sign ...
    assert np.allclose(np.abs(np.sum(a * b, axis=1)), 1.0, atol=1e-9)
    idx = np.argmax(np.abs(a), axis=1)
    assert np.all(a[np.arange(3), idx] > 0) and np.all(b[np.arange(3), idx] > 0)   # ... and the same sign


def test_edit_moves_only_the_layer_range_by_sigma_std():
    wp = np.zeros((2, 8, 4))
    comp = np.array([0.0, 0.6, 0.8, 0.0])
    out = ganspace.edit(wp, comp, sigma=2.0, std=1.5, layers=(2, 5))
    np.testing.assert_allclose(out[:, 2:5], np.broadcast_to(3.0 * comp, (2, 3, 4)))
    assert np.all(out[:, :2] == 0) and np.all(out[:, 5:] == 0)
    with pytest.raises(ValueError, match="layers"):
        ganspace.edit(wp, comp, 1.0, layers=(5, 9))


def test_model_file_round_trip(tmp_path):
    x, *_ = planted(n=500)
    m = ganspace.fit_model(x, 4)
    p = m.save(tmp_path / "g.npz", layers=np.array([0, 3]))
    back = ganspace.GanspaceModel.load(p)
    np.testing.assert_allclose(back.components, m.components, atol=1e-6)
    np.testing.assert_allclose(back.stds, m.stds, rtol=1e-6)
    np.savez(tmp_path / "other.npz", a=np.zeros(3))
    with pytest.raises(ValueError, match="missing arrays"):
        ganspace.GanspaceModel.load(tmp_path / "other.npz")


def test_rejects_too_many_components():
    with pytest.raises(ValueError, match="n_components"):
        ganspace.fit(np.zeros((10, 4)) + np.arange(4), 5)
