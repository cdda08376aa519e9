"""Tucker / HOSVD tensor models (Papers I, II) on planted ground truth."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.linalg import subspace_angles

from editing.tensor_model import StackedTensorModel, TensorModel, hosvd, lines_meeting_point, reconstruct


def orth(rng, n, r):
    return np.linalg.qr(rng.normal(size=(n, r)))[0]


def test_hosvd_is_exact_with_orthonormal_factors_and_all_orthogonal_core():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(7, 5, 4, 3))
    core, factors = hosvd(t)
    np.testing.assert_allclose(reconstruct(core, factors), t, atol=1e-12)
    for u in factors:
        np.testing.assert_allclose(u.T @ u, np.eye(u.shape[1]), atol=1e-12)
    for mode in range(core.ndim):   # all-orthogonality: distinct slices of the core are orthogonal
        slices = np.moveaxis(core, mode, 0).reshape(core.shape[mode], -1)
        gram = slices @ slices.T
        np.testing.assert_allclose(gram - np.diag(np.diag(gram)), 0, atol=1e-10)
        assert np.all(np.diff(np.diag(gram)) <= 1e-10)                 # ordered slice norms


def test_truncated_hosvd_recovers_planted_tucker_subspaces():
    rng = np.random.default_rng(1)
    shape, ranks = (20, 9, 6, 5), (4, 3, 2, 2)
    planted = [orth(rng, n, r) for n, r in zip(shape, ranks)]
    t = reconstruct(rng.normal(size=ranks), planted)
    core, factors = hosvd(t, ranks)
    assert core.shape == ranks
    np.testing.assert_allclose(reconstruct(core, factors), t, atol=1e-11)
    for u, p in zip(factors, planted):   # gauge: each factor is determined up to a rotation of its subspace
        assert np.max(subspace_angles(u, p)) < 1e-8


def structured_latents(rng, persons=6, expressions=5, d=24):
    return rng.normal(size=(persons, expressions, d))


def test_als_recovers_person_and_expression_parameters():
    rng = np.random.default_rng(2)
    m = TensorModel.fit(structured_latents(rng), ["person", "expression"])
    alpha = rng.dirichlet(np.ones(6))                       # a new person: an affine mix of the training ones
    p_true = m.factors[0].T @ alpha
    e_true = m.row("expression", 3)
    w = m.synthesize({"person": p_true, "expression": e_true})
    est = m.estimate(w, ridge=1e-12, sum_to_one=1.0, n_iter=500)
    assert est.residual < 1e-8 * np.linalg.norm(w - m.mean)
    # the sum-to-one penalty fixes the scale gauge (p c, e / c): the parameters themselves come back
    np.testing.assert_allclose(est.params["person"], p_true, atol=1e-7)
    np.testing.assert_allclose(est.params["expression"], e_true, atol=1e-7)
    assert all(b <= a * (1 + 1e-9) for a, b in zip(est.history, est.history[1:]))   # ALS never increases


def test_als_without_sum_to_one_recovers_only_up_to_the_scale_gauge():
    rng = np.random.default_rng(3)
    m = TensorModel.fit(structured_latents(rng), ["person", "expression"])
    p, e = m.row("person", 1), m.row("expression", 2)
    w = m.synthesize({"person": p, "expression": e})
    est = m.estimate(w, ridge=0.0, sum_to_one=0.0, n_iter=500,
                     init={"person": 2.5 * m.mean_params()["person"]})
    np.testing.assert_allclose(np.outer(est.params["person"], est.params["expression"]), np.outer(p, e), atol=1e-7)


def test_ridge_shrinks_the_estimate():
    rng = np.random.default_rng(4)
    m = TensorModel.fit(structured_latents(rng), ["person", "expression"])
    w = m.synthesize({"person": 1.5 * m.row("person", 0), "expression": m.row("expression", 1)})
    norms = [np.linalg.norm(m.estimate(w, ridge=lam, sum_to_one=0.0).params["person"]) for lam in (1e-6, 1.0, 10.0)]
    assert norms[0] > norms[1] > norms[2]


def test_fixed_modes_are_not_estimated():
    rng = np.random.default_rng(5)
    m = TensorModel.fit(rng.normal(size=(4, 3, 2, 10)), ["person", "expression", "rotation"])
    rot = m.row("rotation", 1)
    w = m.synthesize({"person": m.row("person", 2), "expression": m.row("expression", 0), "rotation": rot})
    est = m.estimate(w, fixed={"rotation": rot}, ridge=1e-12, n_iter=500)
    np.testing.assert_array_equal(est.params["rotation"], rot)
    assert est.residual < 1e-7 * np.linalg.norm(w - m.mean)


def expression_lines_data(rng, persons=5, emotions=4, levels=3, d=16, noise=0.0):
    """Latents person_p + apathy + t_l * dir_e: the expression trajectories are lines through `apathy`."""
    person = rng.normal(size=(persons, d))
    apathy = rng.normal(size=d)
    dirs = rng.normal(size=(emotions, d))
    t = np.array([1.0, 2.0, 3.0])[:levels]
    expr = apathy + t[None, :, None] * dirs[:, None, :]                      # (E, levels, d)
    lat = person[:, None, None, :] + expr[None]
    lat = lat + noise * rng.normal(size=lat.shape)
    return lat, person, apathy, dirs, t


def test_point_of_apathy_where_expression_lines_meet():
    rng = np.random.default_rng(6)
    lat, person, apathy, dirs, _ = expression_lines_data(rng)
    m = TensorModel.fit(lat.reshape(5, 12, 16), ["person", "expression"])   # expression mode = emotion x level
    groups = [list(range(e * 3, e * 3 + 3)) for e in range(4)]
    w, param, rms = m.apathy_point(groups)
    assert rms < 1e-10
    np.testing.assert_allclose(w, person.mean(0) + apathy, atol=1e-9)


def test_point_of_apathy_with_a_separate_intensity_mode():
    rng = np.random.default_rng(11)
    lat, person, apathy, dirs, t = expression_lines_data(rng)                # (person, emotion, level, d)
    m = TensorModel.fit(lat, ["person", "expression", "intensity"], ranks={"intensity": 2})
    w, rms = m.apathy_from_levels()
    assert rms < 1e-9
    np.testing.assert_allclose(w, person.mean(0) + apathy, atol=1e-9)
    stacked = StackedTensorModel.fit(np.stack([lat, 2 * lat], axis=3), ["person", "expression", "intensity"],
                                     {"intensity": 2})
    wp, rms = stacked.apathy_from_levels()
    np.testing.assert_allclose(wp, np.stack([1, 2])[:, None] * (person.mean(0) + apathy), atol=1e-9)


def test_lines_meeting_point_with_noise():
    rng = np.random.default_rng(7)
    x0 = rng.normal(size=3)
    groups = [x0 + np.outer([1, 2, 3, 4], rng.normal(size=3)) + 1e-3 * rng.normal(size=(4, 3)) for _ in range(5)]
    point, rms = lines_meeting_point(groups)
    assert np.linalg.norm(point - x0) < 5e-3 and rms < 5e-3


def test_global_expression_directions_from_truncated_intensity_mode():
    rng = np.random.default_rng(8)
    lat, person, apathy, dirs, t = expression_lines_data(rng, levels=3)     # (person, emotion, level, d)
    m = TensorModel.fit(lat + 0.01 * rng.normal(size=lat.shape), ["person", "expression", "intensity"],
                        ranks={"intensity": 2})
    # rank 2 = a level-independent and a level-linear pattern: the noise-free part is represented
    # exactly, so the direction is (t_max - t_min) * dir_e at every expression
    d_e = m.expression_directions(expression="expression", intensity="intensity")
    assert d_e.shape == (4, 16)
    np.testing.assert_allclose(d_e, (t[-1] - t[0]) * dirs, atol=0.05)
    # rank 1 cannot hold both patterns, and the directions degrade
    m1 = TensorModel.fit(lat, ["person", "expression", "intensity"], ranks={"intensity": 1})
    err1 = np.abs(m1.expression_directions() - (t[-1] - t[0]) * dirs).max()
    assert err1 > 0.1


def test_expression_directions_from_a_neutral_row():
    rng = np.random.default_rng(9)
    lat = rng.normal(size=(4, 5, 8))
    m = TensorModel.fit(lat, ["person", "expression"])
    d = m.expression_directions(intensity=None, neutral=0)
    np.testing.assert_allclose(d[0], 0, atol=1e-12)
    # full rank: the model reproduces the data, so a direction is the difference of person-mean latents
    np.testing.assert_allclose(d[2], lat[:, 2].mean(0) - lat[:, 0].mean(0), atol=1e-10)


def test_stacked_style_separated_model_fits_each_layer():
    rng = np.random.default_rng(10)
    lat = rng.normal(size=(4, 3, 6, 10))                                    # person x expression x W+ (6, 10)
    stacked = StackedTensorModel.fit(lat, ["person", "expression"])
    assert len(stacked.layers) == 6
    wp = stacked.synthesize([{"person": m.row("person", 1), "expression": m.row("expression", 2)}
                             for m in stacked.layers])
    np.testing.assert_allclose(wp, lat[1, 2], atol=1e-10)
    ests = stacked.estimate(wp, ridge=1e-12, n_iter=500)
    assert max(e.residual for e in ests) < 1e-7
    # each layer picks its own truncated subspaces, so over the data set the stacked model fits better
    # than one model of the same ranks over the flattened W+
    trunc = {"person": 2, "expression": 2}
    err_stacked = np.linalg.norm(np.stack([m.reconstruct() for m in StackedTensorModel.fit(
        lat, ["person", "expression"], trunc).layers], axis=2) - lat)
    flat = TensorModel.fit(lat.reshape(4, 3, 60), ["person", "expression"], trunc)
    err_flat = np.linalg.norm(flat.reconstruct() - lat.reshape(4, 3, 60))
    assert err_stacked < err_flat


def test_fit_rejects_bad_input():
    with pytest.raises(ValueError, match="one axis per mode"):
        TensorModel.fit(np.zeros((3, 4)), ["person", "expression"])
    with pytest.raises(ValueError, match="unknown modes"):
        TensorModel.fit(np.random.default_rng(0).normal(size=(3, 4, 5)), ["person", "expression"], {"pose": 1})
    with pytest.raises(ValueError, match="rank of mode"):
        hosvd(np.ones((3, 4)), [5, None])
