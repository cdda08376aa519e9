"""Editing directions in h-space: PCA, Jacobian singular vectors, supervised normals, orthogonal projection.

All directions are unit vectors in the flattened h-space (C * H * W) returned in h's shape [C, H, W];
`spread` turns a unit direction into "one standard deviation of the data along it", the unit that makes
gamma comparable between methods and timesteps.
"""
from __future__ import annotations

from typing import Callable

import torch
from diffusers import UNet2DModel
from torch.nn.attention import SDPBackend, sdpa_kernel

from editing import ganspace, interfacegan
from editing.hspace.sampling import eps_and_h, mid_block_hook
from editing.linalg import orient_rows


# ---------------------------------------------------------------- (a) PCA of h_t

def pca_per_timestep(h_by_t: dict[int, torch.Tensor], k: int) -> tuple[dict[int, torch.Tensor], dict[int, torch.Tensor]]:
    """PCA of h_t over samples at each timestep: ({t: unit axes [k, C, H, W]}, {t: standard deviations [k]}).

    PCA itself is GANSpace's (editing.ganspace.fit). An edit that adds the i-th axis at every timestep must
    push the same way at each t, so each axis is flipped to agree (positive dot product) with the same
    axis at the previous, noisier timestep.
    """
    axes, stds, prev = {}, {}, None
    for t in sorted(h_by_t, reverse=True):
        h = h_by_t[t]
        comps, sd = ganspace.fit(h.flatten(1).double().numpy(), k)
        a = torch.from_numpy(comps)
        if prev is not None:
            a = a * torch.where((a * prev).sum(1, keepdim=True) < 0, -1.0, 1.0).to(a)
        prev = a
        axes[t] = a.to(h.dtype).reshape(k, *h.shape[1:])
        stds[t] = torch.from_numpy(sd).to(h.dtype)
    return axes, stds


# ---------------------------------------------------------------- (b) Jacobian singular vectors

def top_singular_vectors(f: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, k: int, iters: int = 50,
                         oversample: int | None = None, tol: float | None = None,
                         seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k singular values and right singular vectors of J = df/dx at x, by power (subspace) iteration.

    Only Jacobian-vector products are used: J v by forward mode (torch.func.jvp) and J^T u by reverse mode
    (torch.func.vjp), batched over the block with vmap. The block V (n x p, p = k + oversample) is iterated
    V <- orth(J^T J V); a final Rayleigh-Ritz step (SVD of J V) returns the values, sorted descending, and
    vectors (k, x.numel()). Oversampling speeds up convergence of the k-th vector, which is governed by
    sigma_{p+1} / sigma_k instead of sigma_{k+1} / sigma_k. `iters` is the most iterations; the loop stops
    early once the top-k Ritz pairs (theta, y) of J^T J in the block have relative residuals
    |J^T J V y - theta V y| / theta_1 below `tol` (default 100 x the dtype's machine epsilon).
    Attention inside f must run on the math SDPA backend (forward-mode AD), which is selected here.
    """
    x = x.detach()
    n = x.numel()
    p = min(n, k + (max(k, 4) if oversample is None else oversample))
    assert 1 <= k <= n, f"k must be in 1..{n}, got {k}"
    g = torch.Generator().manual_seed(seed)
    v = torch.linalg.qr(torch.randn(n, p, generator=g, dtype=torch.float64).to(x)).Q
    with sdpa_kernel(SDPBackend.MATH):
        out, vjp_fn = torch.func.vjp(f, x)

        def jv(block):  # [p, n] -> [p, m]
            tangents = block.reshape(-1, *x.shape)
            return torch.func.vmap(lambda t: torch.func.jvp(f, (x,), (t,))[1])(tangents).reshape(len(block), -1)

        def jtu(block):  # [p, m] -> [p, n]
            return torch.func.vmap(vjp_fn)(block.reshape(-1, *out.shape))[0].reshape(len(block), -1)

        tol = 100 * torch.finfo(x.dtype).eps if tol is None else tol
        for _ in range(iters):
            w = jtu(jv(v.T)).T  # J^T J V, n x p
            theta, y = torch.linalg.eigh(v.T @ w)  # Ritz pairs of J^T J, ascending
            theta, y = theta.flip(0)[:k], y.flip(1)[:, :k]
            residual = torch.linalg.vector_norm(w @ y - (v @ y) * theta, dim=0).max() / theta[0]
            if residual < tol or theta[0] == 0:  # converged, or J = 0 (any block is then "singular")
                break
            v = torch.linalg.qr(w).Q
        b = jv(v.T).T  # m x p
    _, s, wh = torch.linalg.svd(b, full_matrices=False)
    vectors = (v @ wh.T)[:, :k].T
    return s[:k].detach(), vectors.detach()


def h_to_eps(unet: UNet2DModel, x_t: torch.Tensor, t: int,
             region: torch.Tensor | None = None) -> Callable[[torch.Tensor], torch.Tensor]:
    """f(h) = the UNet output at (x_t, t) when the mid-block output is replaced by h (optionally only the
    output pixels where `region` [H, W] is True): the map whose Jacobian d eps / d h gives directions."""
    assert x_t.ndim == 4, f"x_t must be [B, C, H, W], got {tuple(x_t.shape)}"
    if region is not None:
        assert region.shape == x_t.shape[-2:] and region.dtype == torch.bool, "region must be a bool [H, W] mask"

    def f(h):
        with mid_block_hook(unet, lambda _: h):
            eps = unet(x_t, t).sample
        return eps[..., region] if region is not None else eps

    return f


def jacobian_directions(unet: UNet2DModel, x_t: torch.Tensor, t: int, k: int, iters: int = 50,
                        region: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-k right singular vectors of d eps / d h_t at one sample x_t [1, C, H, W]: (values [k], [k, C', H', W'])."""
    assert x_t.shape[0] == 1, "Jacobian directions are local: pass one sample"
    with torch.no_grad():
        h = eps_and_h(unet, x_t, t)[1]
    values, vectors = top_singular_vectors(h_to_eps(unet, x_t, t, region), h, k, iters)
    vectors = torch.from_numpy(orient_rows(vectors.double().numpy())).to(h.dtype)  # no intrinsic sign
    return values, vectors.reshape(k, *h.shape[1:])


# ---------------------------------------------------------------- (c) supervised from labels

def mean_difference(h: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Unit vector mean(h | label 1) - mean(h | label 0), in h's per-sample shape."""
    labels = labels.bool()
    assert labels.shape == (h.shape[0],) and labels.any() and (~labels).any(), "need both labels present"
    d = h[labels].flatten(1).double().mean(0) - h[~labels].flatten(1).double().mean(0)
    return (d / d.norm()).to(h.dtype).reshape(h.shape[1:])


def svm_normal(h: torch.Tensor, scores: torch.Tensor, ratio: float = 0.25) -> torch.Tensor:
    """Unit normal of InterFaceGAN's linear SVM between the top and bottom `ratio` of h by score,
    pointing to higher scores (editing.interfacegan.train_boundary on flattened h)."""
    n = interfacegan.train_boundary(h.flatten(1).double().numpy(), scores.double().numpy(), ratio=ratio)
    return torch.from_numpy(n[0]).to(h.dtype).reshape(h.shape[1:])


# ---------------------------------------------------------------- (d) disentangling by projection

def orthogonalize(n: torch.Tensor, others: list[torch.Tensor]) -> torch.Tensor:
    """Unit n with its component in span(others) removed (InterFaceGAN's conditional projection).

    Any number of others, not necessarily orthogonal to each other; moving along the result leaves the
    projection of h onto every other direction unchanged.
    """
    flat = [o.reshape(1, -1).double().numpy() for o in others]
    out = interfacegan.project_boundary(n.reshape(1, -1).double().numpy(), *flat)
    return torch.from_numpy(out[0]).to(n.dtype).reshape(n.shape)


def spread(h: torch.Tensor, n: torch.Tensor) -> torch.Tensor:
    """Standard deviation over samples h [N, ...] of the projection onto unit direction(s) n [..] or [k, ..]."""
    flat_n = n.reshape(-1, h[0].numel()).to(h)
    return (h.flatten(1) @ flat_n.T).std(0).reshape(n.shape[: n.ndim - (h.ndim - 1)])
