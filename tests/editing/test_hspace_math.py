"""h-space direction math against ground truth: full Jacobian SVD, planted PCA axes, exact projections."""
from __future__ import annotations

import math

import pytest
import torch
from diffusers import UNet2DModel
from torch.nn.attention import SDPBackend, sdpa_kernel

from editing.hspace import (eps_and_h, h_to_eps, mean_difference, orthogonalize, pca_per_timestep, spread,
                            svm_normal, top_singular_vectors)


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_unet() -> UNet2DModel:
    # attention on the way up as well, so forward-mode AD really goes through diffusers' attention
    torch.manual_seed(0)
    return UNet2DModel(sample_size=8, in_channels=1, out_channels=1, block_out_channels=(4, 8),
                       down_block_types=("DownBlock2D", "AttnDownBlock2D"),
                       up_block_types=("AttnUpBlock2D", "UpBlock2D"), layers_per_block=1, norm_num_groups=2,
                       attention_head_dim=4).double().eval().requires_grad_(False)


def full_jacobian(f, h: torch.Tensor) -> torch.Tensor:
    """[m, n] by reverse mode, one row per output (the math backend: the fused one has no batching rule)."""
    with sdpa_kernel(SDPBackend.MATH):
        jac = torch.func.jacrev(f)(h)
    return jac.reshape(-1, h.numel())


def test_power_iteration_matches_full_jacobian_svd_on_a_unet():
    unet = tiny_unet()
    x_t = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        h = eps_and_h(unet, x_t, 500)[1]
    f = h_to_eps(unet, x_t, 500)
    jac = full_jacobian(f, h)
    _, s_ref, vh_ref = torch.linalg.svd(jac)

    values, vectors = top_singular_vectors(f, h, k=3, iters=50)

    assert values.shape == (3,) and vectors.shape == (3, h.numel())
    assert torch.all(values[:-1] >= values[1:])
    torch.testing.assert_close(values, s_ref[:3], rtol=1e-4, atol=0)
    cos = (vectors @ vh_ref[:3].T).diagonal().abs()
    assert torch.all(cos > 1 - 1e-4), cos


def test_power_iteration_on_a_plain_function_with_known_singular_values():
    # f(x) = tanh(A x) at x = 0 has J = A; A is built with singular values 5, 3, 2, 1, ... and known vectors
    g = torch.Generator().manual_seed(1)
    u, _ = torch.linalg.qr(torch.randn(12, 12, generator=g, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(6 * 5, 6 * 5, generator=g, dtype=torch.float64))
    s = torch.tensor([5.0, 3.0, 2.0, 1.0, 0.5, 0.25, 0.1, 0.05, 0.02, 0.01, 0.005, 0.001], dtype=torch.float64)
    a = u @ torch.diag(s) @ v[:, :12].T

    values, vectors = top_singular_vectors(lambda x: torch.tanh(a @ x.reshape(-1)), torch.zeros(6, 5, dtype=torch.float64), k=4)

    torch.testing.assert_close(values, s[:4], rtol=1e-8, atol=0)
    assert torch.all((vectors @ v[:, :4]).diagonal().abs() > 1 - 1e-8)


def test_float32_power_iteration_is_accurate_to_1e_4():
    unet = tiny_unet().float()
    x_t = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        h = eps_and_h(unet, x_t, 300)[1]
    f = h_to_eps(unet, x_t, 300)
    _, s_ref, vh_ref = torch.linalg.svd(full_jacobian(f, h).double())
    values, vectors = top_singular_vectors(f, h, k=2)
    torch.testing.assert_close(values.double(), s_ref[:2], rtol=1e-4, atol=0)
    assert torch.all((vectors.double() @ vh_ref[:2].T).diagonal().abs() > 1 - 1e-4)


def test_region_restricts_the_jacobian_to_those_output_pixels():
    unet = tiny_unet()
    x_t = torch.randn(1, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        h = eps_and_h(unet, x_t, 500)[1]
    region = torch.zeros(8, 8, dtype=torch.bool)
    region[:3, :4] = True
    jac = full_jacobian(h_to_eps(unet, x_t, 500), h).reshape(8, 8, -1)[region]
    _, s_ref, _ = torch.linalg.svd(jac)
    values, _ = top_singular_vectors(h_to_eps(unet, x_t, 500, region), h, k=2, tol=1e-9)
    torch.testing.assert_close(values, s_ref[:2], rtol=1e-4, atol=0)


def planted_h(n: int, axes: torch.Tensor, stds: list[float], noise: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    coeff = torch.randn(n, len(stds), generator=g, dtype=torch.float64) * torch.tensor(stds, dtype=torch.float64)
    flat = coeff @ axes.reshape(len(stds), -1) + noise * torch.randn(n, axes[0].numel(), generator=g, dtype=torch.float64)
    return (flat + 3.0).reshape(n, *axes.shape[1:])  # an offset: PCA must centre


def test_pca_recovers_planted_directions_with_signs_aligned_over_timesteps():
    g = torch.Generator().manual_seed(2)
    axes, _ = torch.linalg.qr(torch.randn(4 * 3 * 3, 3, generator=g, dtype=torch.float64))
    axes = axes.T.reshape(3, 4, 3, 3)
    stds = [6.0, 3.0, 1.5]
    h_by_t = {901: planted_h(2000, axes, stds, 0.05, 0), 501: planted_h(2000, -axes, stds, 0.05, 1),
              101: planted_h(2000, axes, stds, 0.05, 2)}

    found, found_std = pca_per_timestep(h_by_t, k=3)

    for t in h_by_t:
        assert found[t].shape == (3, 4, 3, 3)
        cos = (found[t].flatten(1) @ axes.flatten(1).T).diagonal()
        assert torch.all(cos.abs() > 0.999), (t, cos)
        torch.testing.assert_close(found_std[t], torch.tensor(stds, dtype=torch.float64), rtol=0.05, atol=0)
        torch.testing.assert_close(spread(h_by_t[t], found[t]), found_std[t], rtol=1e-2, atol=0)
    for i in range(3):  # same sign of axis i along the trajectory, although t=501 was planted flipped
        assert (found[901][i] * found[501][i]).sum() > 0.99 and (found[501][i] * found[101][i]).sum() > 0.99


def test_orthogonalize_is_exact_against_several_non_orthogonal_directions():
    g = torch.Generator().manual_seed(3)
    base = torch.randn(64, generator=g, dtype=torch.float64)
    others = [base + 0.3 * torch.randn(64, generator=g, dtype=torch.float64) for _ in range(4)]  # correlated
    n = base + torch.randn(64, generator=g, dtype=torch.float64)

    out = orthogonalize(n.reshape(4, 4, 4), [o.reshape(4, 4, 4) for o in others])

    assert out.shape == (4, 4, 4)
    assert abs(out.norm().item() - 1) < 1e-12
    for o in others:
        assert abs((out.reshape(-1) @ o).item()) < 1e-12 * o.norm().item()
    # what is left is the part of n outside span(others): n = (n . out) out + something in the span
    q, _ = torch.linalg.qr(torch.stack(others, 1))
    residual = n - q @ (q.T @ n)
    torch.testing.assert_close(out.reshape(-1), residual / residual.norm(), rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="span"):
        orthogonalize(others[0] + 2 * others[1], others)


def test_correlated_attributes_projection_behaviour_is_pinned():
    """Attributes A and B carried by orthogonal h axes u and v, with latent factors a, b correlated rho = 0.8.

    The mean-difference direction of A then leans towards v: n_A ~ u + rho v (E[b | a] = rho a), and n_B ~
    v + rho u. Projecting n_B out of n_A keeps B's linear score fixed exactly, but because n_B itself leans on
    u, the result is (u - rho v)/norm in closed form: it moves the true factor b *backwards*
    (cos with v = -rho / sqrt(1 + rho^2) = -0.625). Projecting out the true axis v instead gives u exactly.
    """
    rho, n, d = 0.8, 40_000, 32
    g = torch.Generator().manual_seed(4)
    basis, _ = torch.linalg.qr(torch.randn(d, 2, generator=g, dtype=torch.float64))
    u, v = basis[:, 0], basis[:, 1]
    a = torch.randn(n, generator=g, dtype=torch.float64)
    b = rho * a + math.sqrt(1 - rho**2) * torch.randn(n, generator=g, dtype=torch.float64)
    h = a[:, None] * u + b[:, None] * v + 0.1 * torch.randn(n, d, generator=g, dtype=torch.float64)

    n_a, n_b = mean_difference(h, a > 0), mean_difference(h, b > 0)
    assert abs(n_a @ v - rho / math.sqrt(1 + rho**2)) < 0.01   # confounded: 0.625 of n_A is attribute B
    n_a_perp = orthogonalize(n_a, [n_b])

    assert abs(n_a_perp @ n_b) < 1e-12                          # B's score does not move under the edit
    assert abs(n_a_perp @ u - 1 / math.sqrt(1 + rho**2)) < 0.02  # 0.781
    assert abs(n_a_perp @ v + rho / math.sqrt(1 + rho**2)) < 0.02  # -0.625: the true factor b decreases
    torch.testing.assert_close(orthogonalize(n_a, [v]), u * torch.sign(n_a @ u), rtol=0, atol=0.01)


def test_svm_normal_finds_the_planted_separating_axis():
    g = torch.Generator().manual_seed(5)
    axis = torch.nn.functional.normalize(torch.randn(48, generator=g, dtype=torch.float64), dim=0)
    h = torch.randn(400, 48, generator=g, dtype=torch.float64)
    score = h @ axis + 0.05 * torch.randn(400, generator=g, dtype=torch.float64)
    n = svm_normal(h.reshape(400, 3, 4, 4), score, ratio=0.3)
    assert n.shape == (3, 4, 4)
    assert (n.reshape(-1) @ axis) > 0.95  # points to higher scores
