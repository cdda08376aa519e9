"""NRSfM control (Paper III) on synthetic landmarks from known rank-one bases; regressor and edits."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from editing import nrsfm
from editing.nrsfm import SparseModel


def planted_model(rng, n_lm=16, k=2, deform=0.25):
    b0 = rng.normal(size=(3, n_lm)) * np.array([[1.0], [1.2], [0.6]])
    d = rng.normal(size=(k, 3))
    d /= np.linalg.norm(d, axis=1, keepdims=True)
    return SparseModel(b0, d, deform * rng.normal(size=(k, n_lm)))


def planted_params(rng, n, k, rot=0.4):
    s = rng.uniform(20, 30, size=n)
    return np.concatenate([np.stack([s, np.zeros(n), s], 1), rng.uniform(-rot, rot, size=(n, 3)),
                           rng.normal(size=(n, k)), rng.uniform(20, 40, size=(n, 2))], 1)


def test_render_is_the_documented_projection():
    rng = np.random.default_rng(0)
    m = planted_model(rng, n_lm=5, k=1)
    q = np.array([2.0, 0.3, 1.5, 0.1, -0.2, 0.3, 0.7, 4.0, -1.0])
    r = nrsfm.rotation_matrix(torch.tensor(q[3:6])).numpy()
    np.testing.assert_allclose(r @ r.T, np.eye(3), atol=1e-12)
    np.testing.assert_allclose(nrsfm.euler_from_rotation(r), q[3:6], atol=1e-12)
    shape = m.B0 + 0.7 * np.outer(m.D[0], m.b[0])
    expected = np.array([[2.0, 0.3], [0.0, 1.5]]) @ r[:2] @ shape + np.array([[4.0], [-1.0]])
    np.testing.assert_allclose(m.render_np(q), expected, atol=1e-12)
    assert nrsfm.param_names(1) == ["k1", "k2", "k3", "theta_x", "theta_y", "theta_z", "alpha_1", "t_x", "t_y"]


def rotations_up_to_gauge_and_mirror(q_fit, q_true):
    """Max error of relative rotations R_i R_0^T, allowing the depth-mirror solution of orthography."""
    r = nrsfm.rotation_matrix(torch.tensor(q_fit[:, 3:6])).numpy()
    rt = nrsfm.rotation_matrix(torch.tensor(q_true[:, 3:6])).numpy()
    rel, rel_t = r @ r[0].T, rt @ rt[0].T
    f = np.diag([1.0, 1.0, -1.0])
    return min(np.abs(rel - rel_t).max(), np.abs(rel - f @ rel_t @ f).max())


def test_fit_reproduces_landmarks_from_known_rank_one_bases():
    rng = np.random.default_rng(1)
    true = planted_model(rng)
    q = planted_params(rng, 60, 2)
    lm = true.render_np(q)
    deformation = np.sqrt(np.mean((lm - true.render_np(np.concatenate([q[:, :6], 0 * q[:, 6:8], q[:, 8:]], 1))) ** 2))
    res = nrsfm.fit_sparse_model(lm, n_basis=2)
    assert res.rms < 1e-6 * deformation                 # noise-free: exact
    np.testing.assert_allclose(res.model.render_np(res.q), lm, atol=1e-5)
    # the metric upgrade found true cameras: scales proportional to the planted ones, no skew, square pixels
    ratio = res.q[:, 0] / q[:, 0]
    assert ratio.std() / ratio.mean() < 1e-6
    np.testing.assert_allclose(res.q[:, 2], res.q[:, 0], rtol=1e-6)
    assert np.abs(res.q[:, 1]).max() < 1e-5 * res.q[:, 0].min()
    assert rotations_up_to_gauge_and_mirror(res.q, q) < 1e-5
    # gauges: unit d_k and b_k, zero-mean alphas
    np.testing.assert_allclose(np.linalg.norm(res.model.D, axis=1), 1.0)
    np.testing.assert_allclose(np.linalg.norm(res.model.b, axis=1), 1.0)
    np.testing.assert_allclose(res.q[:, 6:8].mean(0), 0.0, atol=1e-9)
    # new frames of the same object (new pose, new deformation) are fitted exactly by the learnt model
    for qi in planted_params(rng, 3, 2):
        _, rms = nrsfm.fit_params(res.model, true.render_np(qi))
        assert rms < 1e-6 * deformation


def test_rigid_tracks_are_the_tomasi_kanade_case():
    rng = np.random.default_rng(5)
    true = planted_model(rng, n_lm=12, k=1)
    q = planted_params(rng, 30, 1)
    q[:, 6] = 0.0                                      # no deformation
    res = nrsfm.fit_sparse_model(true.render_np(q), n_basis=0)
    assert res.q.shape == (30, 8) and res.rms < 1e-8
    assert rotations_up_to_gauge_and_mirror(res.q, q) < 1e-6


def test_fit_with_landmark_noise_reaches_the_noise_floor():
    rng = np.random.default_rng(4)
    true = planted_model(rng, n_lm=20, k=3, deform=0.15)
    q = planted_params(rng, 100, 3, rot=0.5)
    clean = true.render_np(q)
    noise = 0.1
    res = nrsfm.fit_sparse_model(clean + noise * rng.normal(size=clean.shape), n_basis=3)
    assert res.history[1] < res.history[0]              # the joint refinement improves on the closed form
    assert res.rms < noise                              # fits no worse than the noise ...
    assert np.sqrt(np.mean((res.model.render_np(res.q) - clean) ** 2)) < 0.7 * noise   # ... and denoises


def test_fit_rejects_bad_landmarks():
    with pytest.raises(ValueError, match=r"\(N, 2, L\)"):
        nrsfm.fit_sparse_model(np.zeros((5, 3, 10)), 1)
    bad = np.random.default_rng(0).normal(size=(5, 2, 10))
    bad[1, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        nrsfm.fit_sparse_model(bad, 1)
    with pytest.raises(ValueError, match="n_basis"):
        nrsfm.fit_sparse_model(np.zeros((5, 2, 10)), 8)


def test_model_file_round_trip(tmp_path):
    m = planted_model(np.random.default_rng(2))
    back = SparseModel.load(m.save(tmp_path / "m.npz"))
    np.testing.assert_array_equal(back.bases(), m.bases())


def test_regressor_learns_q_from_latents_with_the_landmark_loss():
    rng = np.random.default_rng(3)
    true = planted_model(rng, n_lm=12, k=2)
    n, dim = 400, 10
    w = rng.normal(size=(n, dim))
    a = rng.normal(size=(10, dim)) * 0.1          # q depends smoothly on w
    q = planted_params(rng, 1, 2)[0] + np.tanh(w @ a.T) * np.array([3, 0, 3, .2, .2, .2, 1, 1, 4, 4])
    lm = true.render_np(q)
    phi, hist = nrsfm.train_regressor(true, w[:300], lm[:300], q_init=q[:300], epochs=80, progress=False)
    with torch.no_grad():
        pred = true.render(phi(torch.tensor(w[300:], dtype=torch.float32)).double()).numpy()
    baseline = np.sqrt(np.mean((lm[300:] - lm[:300].mean(0)) ** 2))    # predicting the mean landmarks
    err = np.sqrt(np.mean((pred - lm[300:]) ** 2))
    assert hist[-1] < hist[0]
    print(f"held-out landmark RMS {err:.4f} vs mean-landmark predictor {baseline:.4f}")
    assert err < 0.15 * baseline, (err, baseline)


def test_linear_edit_is_exact_in_one_step_for_a_linear_regressor():
    torch.manual_seed(0)
    phi = torch.nn.Linear(12, 5).double()
    w0 = torch.randn(12, dtype=torch.float64)
    with torch.no_grad():
        q0 = phi(w0.unsqueeze(0))[0]
    target = q0.clone()
    target[1] += 0.7                                   # change one parameter, hold the others
    w = nrsfm.linear_edit(phi, w0, target)
    with torch.no_grad():
        torch.testing.assert_close(phi(w.unsqueeze(0))[0], target, atol=1e-10, rtol=0)
    # minimum-norm step: orthogonal to the regressor's null space
    null = torch.linalg.svd(phi.weight.detach())[2][5:]
    assert (null @ (w - w0)).abs().max() < 1e-10


def test_linear_edit_is_first_order_for_a_nonlinear_regressor():
    torch.manual_seed(1)
    phi = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.Tanh(), torch.nn.Linear(16, 3)).double()
    w0 = torch.randn(8, dtype=torch.float64)
    with torch.no_grad():
        q0 = phi(w0.unsqueeze(0))[0]
    errors = []
    for step in (0.1, 0.01):
        target = q0 + step
        with torch.no_grad():
            errors.append(float((phi(nrsfm.linear_edit(phi, w0, target).unsqueeze(0))[0] - target).norm()))
    assert errors[1] < errors[0] / 50                  # second-order remainder: 10x smaller step, ~100x smaller error


def test_gradient_edit_moves_less_as_lambda_grows():
    torch.manual_seed(2)
    dim = 16
    phi = torch.nn.Linear(dim, 4)
    proj = torch.randn(dim, 64)

    def synth(w):
        return torch.tanh(w @ proj).reshape(-1, 1, 8, 8)

    w0 = torch.randn(dim)
    with torch.no_grad():
        target = phi(w0.unsqueeze(0))[0] + torch.tensor([1.0, -1.0, 0.5, 0.0])
    image_changes, misses = [], []
    for lam in (0.0, 1.0, 10.0, 100.0):
        w, hist = nrsfm.gradient_edit(phi, synth, w0, target, lam=lam, steps=300, lr=0.02)
        with torch.no_grad():
            image_changes.append(float(((synth(w.unsqueeze(0)) - synth(w0.unsqueeze(0))) ** 2).mean()))
            misses.append(float((phi(w.unsqueeze(0))[0] - target).norm()))
    # for minimisers of f + lambda D, D falls and f rises with lambda: the image moves less, the target
    # is met less closely
    assert misses[0] < 1e-2                            # lambda = 0 reaches the target
    assert all(a > b for a, b in zip(image_changes, image_changes[1:])), image_changes
    assert all(a < b for a, b in zip(misses, misses[1:])), misses
