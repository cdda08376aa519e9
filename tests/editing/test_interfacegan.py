"""InterFaceGAN on planted ground truth: the SVM normal, conditional projection, Z/W interpolation, files."""
from __future__ import annotations

import numpy as np
import pytest

from editing import interfacegan as ifg


def planted(n=20000, d=64, noise=0.1, seed=0, offset=2.0):
    rng = np.random.default_rng(seed)
    normal = rng.normal(size=d)
    normal /= np.linalg.norm(normal)
    x = rng.normal(size=(n, d)) + offset          # off-centre, like W latents
    scores = x @ normal + noise * rng.normal(size=n)
    return x, scores, normal


def test_svm_recovers_planted_normal_at_d64_with_reference_ratio():
    x, s, normal = planted()
    fit = ifg.fit_boundary(x, s, ratio=0.02)
    n = fit.normal
    assert n.shape == (1, 64)
    assert np.linalg.norm(n) == pytest.approx(1.0, abs=1e-12)
    cos = float(n[0] @ normal)
    assert cos >= 0.95, f"cos = {cos:.4f}"           # also the sign: it points to higher scores
    assert fit.n_per_class == 400 and fit.val_accuracy >= 0.99
    np.testing.assert_array_equal(ifg.train_boundary(x, s), n)


def test_svm_ignores_unscorable_samples_and_rejects_constant_scores():
    x, s, normal = planted(n=5000)
    s[::7] = np.nan
    assert float(ifg.train_boundary(x, s, ratio=0.05)[0] @ normal) >= 0.95
    with pytest.raises(ValueError, match="overlap"):
        ifg.train_boundary(x, np.ones(len(x)), ratio=0.05)
    with pytest.raises(ValueError, match="per side"):
        ifg.train_boundary(x[:40], s[:40], ratio=0.02)
    with pytest.raises(ValueError, match="one value per latent"):
        ifg.train_boundary(x, s[:-1])


def test_project_boundary_is_the_unit_projection_orthogonal_to_all_conditions():
    rng = np.random.default_rng(1)
    p = rng.normal(size=(1, 32))
    conds = [rng.normal(size=(1, 32)) for _ in range(3)]
    out = ifg.project_boundary(p, *conds)
    assert out.shape == (1, 32) and np.linalg.norm(out) == pytest.approx(1.0)
    for c in conds:
        assert abs((out @ c.T).item()) < 1e-12
    # it is the primary's component outside span(conditions): primary = a * out + (something in the span)
    basis = np.linalg.qr(np.concatenate(conds).T)[0]
    resid = p - (p @ out.T) * out
    assert np.allclose(resid, resid @ basis @ basis.T, atol=1e-12)
    assert (p @ out.T).item() > 0
    # one condition: the closed form of the reference, n - (n.c) c with unit n and c
    pn, c = p / np.linalg.norm(p), conds[0] / np.linalg.norm(conds[0])
    ref = pn - (pn @ c.T) * c
    np.testing.assert_allclose(ifg.project_boundary(p, conds[0]), ref / np.linalg.norm(ref), atol=1e-12)


def test_conditional_edit_keeps_the_condition_attribute_on_planted_data():
    rng = np.random.default_rng(2)
    d = 64
    a, b = rng.normal(size=d), rng.normal(size=d)
    b = 0.6 * a / np.linalg.norm(a) + 0.8 * b / np.linalg.norm(b)   # correlated attributes
    x = rng.normal(size=(20000, d))
    na = ifg.train_boundary(x, x @ a, ratio=0.05)
    nb = ifg.train_boundary(x, x @ b, ratio=0.05)
    cond = ifg.project_boundary(na, nb)
    x0 = rng.normal(size=(100, d))
    plain, conditioned = ifg.edit(x0, na, 3.0), ifg.edit(x0, cond, 3.0)
    assert np.all((plain - x0) @ a > 0) and np.all((conditioned - x0) @ a > 0)
    shift_plain = np.abs((plain - x0) @ b).mean()
    shift_cond = np.abs((conditioned - x0) @ b).mean()
    assert shift_cond < 0.15 * shift_plain, (shift_cond, shift_plain)


def test_project_boundary_refuses_a_primary_inside_the_conditions():
    c1, c2 = np.eye(4)[:1], np.eye(4)[1:2]
    with pytest.raises(ValueError, match="span"):
        ifg.project_boundary(c1 + c2, c1, c2)


def test_interpolation_absolute_in_z_relative_in_w():
    n = np.zeros((1, 8))
    n[0, 0] = 1.0
    z = np.full(8, 0.5)
    codes = ifg.interpolate(z, n, -2, 2, 5, space="z")
    np.testing.assert_allclose(codes @ n[0], [-2, -1, 0, 1, 2])      # distances from the hyperplane
    np.testing.assert_allclose(codes[:, 1:], 0.5)
    w = ifg.interpolate(z, n, -2, 2, 5, space="w")
    np.testing.assert_allclose(w @ n[0], 0.5 + np.array([-2, -1, 0, 1, 2]))
    wp = ifg.interpolate(np.zeros((3, 8)), n, 0, 1, 2, space="wplus")
    assert wp.shape == (2, 3, 8) and np.allclose(wp[1, :, 0], 1.0)


def test_edit_restricted_to_wplus_layers():
    wp = np.zeros((2, 6, 4))
    out = ifg.edit(wp, np.array([[0, 1.0, 0, 0]]), 2.0, layers=(1, 3))
    assert np.all(out[:, 1:3, 1] == 2.0) and np.all(out[:, [0, 3, 4, 5]] == 0) and np.all(wp == 0)


def test_boundary_file_round_trip_and_errors(tmp_path):
    n = np.random.default_rng(0).normal(size=(1, 16))
    p = ifg.save_boundary(tmp_path / "b.npy", n / np.linalg.norm(n))
    got = ifg.load_boundary(p, dim=16)
    assert got.shape == (1, 16)
    np.testing.assert_allclose(got, n / np.linalg.norm(n), atol=1e-6)
    with pytest.raises(ValueError, match="must have 8 columns"):
        ifg.load_boundary(p, dim=8)
    np.save(tmp_path / "bad.npy", np.zeros((2, 16)))
    with pytest.raises(ValueError, match="one unit normal"):
        ifg.load_boundary(tmp_path / "bad.npy")
