"""Non-rigid structure-from-motion control of a generator: René Haas's thesis, Paper III
("Controllable GAN Synthesis Using Non-Rigid Structure-from-Motion", CVPR-W 2023).

Sparse model. L landmarks of an image are the projection of a deformable 3-D shape,

    R(q) = K [I | 0] R(theta) (B0 + sum_k alpha_k B_k) + t,       q = (k, theta, alpha, t)

with K = [[k1, k2], [0, k3]] an affine camera, R(theta) = Rz Ry Rx, B0 (3, L) the mean shape and rank-one
basis shapes B_k = d_k b_k^T (d_k a unit 3-vector, b_k an L-vector): each mode moves all landmarks
along one 3-D direction, by a per-landmark amount.

Basis estimation from landmark tracks (N frames): centre each frame (t) and stack W (2N, L); the rank-3
SVD of W gives cameras M and the rigid shape B0 (Tomasi-Kanade), whose affine ambiguity M G, G^-1 B0
is fixed by the scaled-orthographic metric constraints (equal row norms, orthogonal rows); the SVD of
the residual gives the b_k, and alternating least squares the alphas and d_k. A joint trust-region
least-squares refinement over all frames' (scale, theta, alpha, t) and the shapes then brings the
landmark error to the noise level. Finally the gauges are fixed (unit d_k and b_k, zero-mean alphas,
mean camera rotation = identity). A mirror-image solution fits the landmarks equally well; which of the
two is found is not controlled.

Control. A regressor phi(w) = q is trained with the landmark loss ||R(phi(w)) - psi(G(w))||^2, where
psi is a landmark detector. Edits: the linear edit w = w0 + J^+ (q* - q0), J = dphi/dw at w0 (forward-
mode Jacobian), and the gradient edit min_w ||phi(w) - q*||^2 + lambda D(G(w), G(w0)).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import scipy.optimize
import scipy.sparse
import tensorly as tl
import torch
from loguru import logger
from torch import nn
from torch.func import jacfwd
from tqdm import tqdm

from common.atomic import atomic_savez

__all__ = ["SparseModel", "FitResult", "param_names", "rotation_matrix", "euler_from_rotation", "fit_sparse_model",
           "fit_params", "LatentRegressor", "train_regressor", "linear_edit", "gradient_edit"]


def param_names(n_basis: int) -> list[str]:
    """Names of the entries of q, in order: k1 k2 k3 theta_x theta_y theta_z alpha_1..alpha_K t_x t_y."""
    return (["k1", "k2", "k3", "theta_x", "theta_y", "theta_z"] + [f"alpha_{k + 1}" for k in range(n_basis)]
            + ["t_x", "t_y"])


def rotation_matrix(theta: torch.Tensor) -> torch.Tensor:
    """R = Rz(theta_z) Ry(theta_y) Rx(theta_x) for theta (..., 3) in radians -> (..., 3, 3)."""
    cx, cy, cz = torch.cos(theta).unbind(-1)
    sx, sy, sz = torch.sin(theta).unbind(-1)
    one, zero = torch.ones_like(cx), torch.zeros_like(cx)
    rx = torch.stack([one, zero, zero, zero, cx, -sx, zero, sx, cx], -1).unflatten(-1, (3, 3))
    ry = torch.stack([cy, zero, sy, zero, one, zero, -sy, zero, cy], -1).unflatten(-1, (3, 3))
    rz = torch.stack([cz, -sz, zero, sz, cz, zero, zero, zero, one], -1).unflatten(-1, (3, 3))
    return rz @ ry @ rx


def _rotation_np(theta: np.ndarray) -> np.ndarray:
    """rotation_matrix in numpy (the fitting loop evaluates it thousands of times)."""
    cx, cy, cz = np.cos(theta).T
    sx, sy, sz = np.sin(theta).T
    return np.stack([np.stack([cz * cy, cz * sy * sx - sz * cx, cz * sy * cx + sz * sx], -1),
                     np.stack([sz * cy, sz * sy * sx + cz * cx, sz * sy * cx - cz * sx], -1),
                     np.stack([-sy, cy * sx, cy * cx], -1)], -2)


def euler_from_rotation(r: np.ndarray) -> np.ndarray:
    """theta (3,) with rotation_matrix(theta) = r, for a proper rotation r (3, 3)."""
    theta_y = np.arcsin(np.clip(-r[2, 0], -1.0, 1.0))
    theta_x = np.arctan2(r[2, 1], r[2, 2])
    theta_z = np.arctan2(r[1, 0], r[0, 0])
    return np.array([theta_x, theta_y, theta_z])


@dataclass
class SparseModel:
    """Mean shape B0 (3, L) and rank-one bases B_k = outer(D[k], b[k]), D (K, 3) unit rows, b (K, L)."""

    B0: np.ndarray
    D: np.ndarray
    b: np.ndarray

    @property
    def n_basis(self) -> int:
        return self.D.shape[0]

    @property
    def n_landmarks(self) -> int:
        return self.B0.shape[1]

    @property
    def n_params(self) -> int:
        return 8 + self.n_basis

    def bases(self) -> np.ndarray:
        return np.einsum("kd,kl->kdl", self.D, self.b)

    def shape(self, alpha: np.ndarray) -> np.ndarray:
        """3-D shape (3, L) for basis weights alpha (K,)."""
        return self.B0 + np.einsum("k,kdl->dl", np.asarray(alpha, dtype=np.float64), self.bases())

    def render(self, q: torch.Tensor) -> torch.Tensor:
        """Landmarks (B, 2, L) for parameters q (B, 8 + K): differentiable, in q's dtype and device."""
        if q.ndim != 2 or q.shape[1] != self.n_params:
            raise ValueError(f"q must be (B, {self.n_params}) = (k, theta, alpha, t), got {tuple(q.shape)}")
        k, theta, alpha, t = q[:, :3], q[:, 3:6], q[:, 6:6 + self.n_basis], q[:, 6 + self.n_basis:]
        b0 = torch.as_tensor(self.B0, dtype=q.dtype, device=q.device)
        bases = torch.as_tensor(self.bases(), dtype=q.dtype, device=q.device)
        shape = b0 + torch.einsum("bk,kdl->bdl", alpha, bases)
        zero = torch.zeros_like(k[:, 0])
        cam = torch.stack([k[:, 0], k[:, 1], zero, k[:, 2]], -1).view(-1, 2, 2)
        proj = cam @ rotation_matrix(theta)[:, :2]
        return proj @ shape + t.unsqueeze(-1)

    def render_np(self, q: np.ndarray) -> np.ndarray:
        q = np.asarray(q, dtype=np.float64)
        single = q.ndim == 1
        out = self.render(torch.as_tensor(np.atleast_2d(q))).numpy()
        return out[0] if single else out

    def save(self, path: str | Path, **extra) -> Path:
        return atomic_savez(path, B0=self.B0, D=self.D, b=self.b, param_names=np.array(param_names(self.n_basis)),
                            **extra)

    @classmethod
    def load(cls, path: str | Path) -> "SparseModel":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: NRSfM model .npz not found")
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in ("B0", "D", "b") if k not in z]
            if missing:
                raise ValueError(f"{path}: not an NRSfM model file, missing arrays {missing}")
            return cls(z["B0"].astype(np.float64), z["D"].astype(np.float64), z["b"].astype(np.float64))


@dataclass
class FitResult:
    model: SparseModel
    q: np.ndarray                 # (N, 8 + K) per-frame parameters
    rms: float                    # landmark RMS error of the fit (landmark units)
    history: list[float] = field(default_factory=list)   # landmark RMS after factorization, after refinement


# ----------------------------------------------------------------------------------------------
# basis estimation


def _rank_one_init(cams: np.ndarray, residual: np.ndarray, b: np.ndarray, n_iter: int = 30
                   ) -> tuple[np.ndarray, np.ndarray]:
    """alphas (N, K) and unit d_k (K, 3) with residual_i b_k ~ alpha_ik M_i d_k (b rows orthonormal)."""
    n, k = cams.shape[0], b.shape[0]
    r = np.einsum("nil,kl->nki", residual, b)                             # (N, K, 2)
    alpha = np.zeros((n, k))
    d = np.zeros((k, 3))
    for j in range(k):
        # start from the 3-vector that best explains the projected residual with alpha = 1
        dj = np.linalg.lstsq(cams.reshape(-1, 3), r[:, j].reshape(-1), rcond=None)[0]
        dj = dj / (np.linalg.norm(dj) or 1.0)
        for _ in range(n_iter):
            md = cams @ dj                                                # (N, 2)
            aj = np.einsum("ni,ni->n", md, r[:, j]) / np.maximum(np.einsum("ni,ni->n", md, md), 1e-300)
            dj = np.linalg.lstsq((aj[:, None, None] * cams).reshape(-1, 3), r[:, j].reshape(-1), rcond=None)[0]
            if np.linalg.norm(dj) == 0:
                break
            dj = dj / np.linalg.norm(dj)
        md = cams @ dj
        alpha[:, j] = np.einsum("ni,ni->n", md, r[:, j]) / np.maximum(np.einsum("ni,ni->n", md, md), 1e-300)
        d[j] = dj
    return alpha, d


def _sym_rows(a: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Coefficients of a_i^T Q c_i in the upper-triangle unknowns of a symmetric Q, for rows a, c (n, r)."""
    r = a.shape[1]
    iu, ju = np.triu_indices(r)
    coef = a[:, iu] * c[:, ju] + np.where(iu != ju, a[:, ju] * c[:, iu], 0.0)
    return coef


def _metric_upgrade(p: np.ndarray) -> np.ndarray:
    """H (r, 3) such that every camera P_i H is scaled orthographic (equal-norm orthogonal rows).

    p (N, 2, r) are the frames' rows of a rank-r factorization (r = 3 + K). Q = H H^T solves the linear
    metric constraints; its three leading eigenvectors give H. Working in the whole rank-r space rather than
    the rigid rank-3 part keeps the deformation from leaking into the cameras.
    """
    r = p.shape[2]
    m1, m2 = p[:, 0], p[:, 1]
    a = np.vstack([_sym_rows(m1, m1) - _sym_rows(m2, m2), _sym_rows(m1, m2),
                   (_sym_rows(m1, m1) + _sym_rows(m2, m2)).sum(0, keepdims=True)])
    rhs = np.zeros(a.shape[0])
    rhs[-1] = 2.0 * p.shape[0]            # mean squared row norm 1: the scale gauge
    q = np.linalg.lstsq(a, rhs, rcond=None)[0]
    qm = np.zeros((r, r))
    qm[np.triu_indices(r)] = q
    qm = qm + np.triu(qm, 1).T
    vals, vecs = np.linalg.eigh(qm)
    vals, vecs = vals[::-1][:3], vecs[:, ::-1][:, :3]
    if vals.min() <= 1e-9 * vals.max():
        logger.warning(f"NRSfM metric upgrade: Q has fewer than 3 positive eigenvalues ({np.round(vals, 6)}); "
                       "clipping. The landmarks may be (near) planar or the cameras far from orthographic.")
        vals = np.maximum(vals, 1e-6 * vals.max())
    return vecs * np.sqrt(vals)


def _split_camera(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """M (2, 3) = K Rh with K upper triangular (positive diagonal) and Rh two orthonormal rows."""
    flip = np.array([[0.0, 1.0], [1.0, 0.0]])
    q, r = np.linalg.qr((flip @ m).T)           # (J M)^T = Q R  ->  J M = R^T Q^T, R^T lower triangular
    k = flip @ r.T @ flip
    rh = flip @ q.T
    signs = np.sign(np.diag(k))
    signs[signs == 0] = 1.0
    return k * signs[None], signs[:, None] * rh


def _complete_rotation(rh: np.ndarray) -> np.ndarray:
    return np.vstack([rh, np.cross(rh[0], rh[1])])


_J = np.array([[0.0, 1.0], [-1.0, 0.0]])       # u^T J v = det[u, v] for 2-vectors


def _rank_one_corrective(p: np.ndarray, h3: np.ndarray, n_basis: int) -> tuple[np.ndarray, np.ndarray] | None:
    """Columns h_k (r, K) completing H = [h3 | h_k] and the d_k (K, 3) of the rank-one bases, or None.

    With P_i H = [M_i | c_i1 .. c_iK] and c_ik = alpha_ik M_i d_k, each P_i h_k must be parallel to
    M_i d_k. Writing h_k = h3 a_k + H_perp g_k, det[P_i h_k, M_i d_k] = 0 becomes
    (m_i1 x m_i2) . (a_k x d_k) + <F_i^T J M_i, g_k d_k^T> = 0 (F_i = P_i H_perp): linear in
    (a_k x d_k, g_k d_k^T). Its K-dimensional null space holds the K solutions, separated as the rank-one
    elements by a CP decomposition of the g d^T parts.
    """
    import tensorly.decomposition as tld

    n, _, r = p.shape
    cams = p @ h3
    h_perp = np.linalg.svd(h3, full_matrices=True)[0][:, 3:]                 # (r, K) complement of range(h3)
    f = p @ h_perp                                                            # (N, 2, K)
    normals = np.cross(cams[:, 0], cams[:, 1])                               # (N, 3)
    e = np.einsum("nak,ab,nbj->nkj", f, _J, cams)                            # (N, K, 3)
    system = np.concatenate([normals, e.reshape(n, 3 * n_basis)], axis=1)
    sv, null = np.linalg.svd(system, full_matrices=False)[1:]
    if sv.shape[0] < system.shape[1] or sv[-n_basis - 1] < 1e-6 * sv[0]:
        return None                                                           # null space larger than K: degenerate
    null = null[-n_basis:]                                                    # (K, 3 + 3K)
    zs = null[:, 3:].reshape(n_basis, n_basis, 3)
    if n_basis == 1:
        mix = np.ones((1, 1))
    else:
        cp = tld.parafac(tl.tensor(zs), rank=n_basis, init="svd" if n_basis <= 3 else "random", random_state=0,
                         n_iter_max=500, tol=1e-14)
        mix = cp.factors[0] * cp.weights[None]                                # zs[j] = sum_k mix[j, k] g_k d_k^T
        if np.linalg.cond(mix) > 1e8:
            return None
    comb = np.linalg.solve(mix, null)                                         # rows: (x_k, g_k d_k^T) per k
    h_k, d = np.zeros((r, n_basis)), np.zeros((n_basis, 3))
    for k in range(n_basis):
        x, z = comb[k, :3], comb[k, 3:].reshape(n_basis, 3)
        dk = np.linalg.svd(z)[2][0]
        d[k] = dk
        h_k[:, k] = h3 @ np.cross(dk, x) + h_perp @ (z @ dk)                  # a_k = d_k x x_k, g_k = Z_k d_k
    return h_k, d


def _initial_fit(w: np.ndarray, n_basis: int) -> dict[str, np.ndarray]:
    """Rank-(3 + K) factorization, metric upgrade of the cameras, then the rank-one bases (closed form)."""
    n, _, n_lm = w.shape
    r = 3 + n_basis
    u, sv, vt = np.linalg.svd(w.reshape(2 * n, n_lm), full_matrices=False)
    p = (u[:, :r] * sv[:r]).reshape(n, 2, r)
    h3 = _metric_upgrade(p)
    splits = [_split_camera(c) for c in p @ h3]
    scale = np.array([(k[0, 0] + k[1, 1]) / 2 for k, _ in splits])
    rots = np.stack([_complete_rotation(rh) for _, rh in splits])
    theta = np.stack([euler_from_rotation(rot) for rot in rots])
    cams = scale[:, None, None] * rots[:, :2]                                # nearest scaled-orthographic
    corrective = _rank_one_corrective(p, h3, n_basis) if n_basis else None
    if corrective is not None:
        h_k, d = corrective
        shapes = np.linalg.solve(np.concatenate([h3, h_k], axis=1), vt[:r])    # W = [M | C] H^-1 V^T
        c = p @ h_k                                                           # (N, 2, K): c_ik = alpha_ik M_i d_k
        md = np.einsum("nij,kj->nki", cams, d)
        alpha = np.einsum("nki,nik->nk", md, c) / np.maximum(np.einsum("nki,nki->nk", md, md), 1e-300)
        return dict(scale=scale, theta=theta, alpha=alpha, d=d, b=shapes[3:], b0=shapes[:3])
    # rigid data, or a degenerate configuration: B0 from the cameras, bases from the rigid residual
    lhs = np.einsum("nij,nik->jk", cams, cams)
    b0 = np.linalg.solve(lhs, np.einsum("nij,nil->jl", cams, w))
    residual = w - cams @ b0
    b = np.linalg.svd(residual.reshape(2 * n, n_lm), full_matrices=False)[2][:n_basis]
    alpha, d = _rank_one_init(cams, residual, b)
    return dict(scale=scale, theta=theta, alpha=alpha, d=d, b=b, b0=b0)


def _refine(x: np.ndarray, init: dict[str, np.ndarray], n_iter: int) -> tuple[dict, list[float]]:
    """Joint trust-region least squares on the landmark error over every frame's (log scale, theta,
    alpha, t) and the shapes (B0, d, b), with the Jacobian's block sparsity (a frame's parameters
    touch only its own landmarks), so finite differences need few evaluations."""
    n, _, n_lm = x.shape
    k = init["alpha"].shape[1]
    per_frame = np.concatenate([np.log(init["scale"])[:, None], init["theta"], init["alpha"], x.mean(2)], 1)
    n_pf = per_frame.shape[1]
    shared = np.concatenate([init["b0"].ravel(), init["d"].ravel(), init["b"].ravel()])

    def unpack(z):
        pf = z[:n * n_pf].reshape(n, n_pf)
        sh = z[n * n_pf:]
        return (pf, sh[:3 * n_lm].reshape(3, n_lm), sh[3 * n_lm:3 * n_lm + 3 * k].reshape(k, 3),
                sh[3 * n_lm + 3 * k:].reshape(k, n_lm))

    def residual(z):
        pf, b0, d, b = unpack(z)
        shape = b0[None] + np.einsum("nk,kd,kl->ndl", pf[:, 4:4 + k], d, b)
        rot = _rotation_np(pf[:, 1:4])[:, :2]
        out = np.exp(pf[:, 0])[:, None, None] * (rot @ shape) + pf[:, 4 + k:, None]
        return (out - x).ravel()

    sparsity = np.zeros((n * 2 * n_lm, n * n_pf + shared.size), dtype=bool)
    for i in range(n):
        sparsity[i * 2 * n_lm:(i + 1) * 2 * n_lm, i * n_pf:(i + 1) * n_pf] = True
    sparsity[:, n * n_pf:] = True
    z0 = np.concatenate([per_frame.ravel(), shared])
    first = float(np.sqrt(np.mean(residual(z0) ** 2)))
    sol = scipy.optimize.least_squares(residual, z0, jac_sparsity=scipy.sparse.csr_matrix(sparsity),
                                       method="trf", tr_solver="lsmr", x_scale="jac", max_nfev=n_iter,
                                       ftol=1e-9, xtol=1e-12, gtol=1e-12)
    pf, b0, d, b = unpack(sol.x)
    out = dict(scale=np.exp(pf[:, 0]), theta=pf[:, 1:4], alpha=pf[:, 4:4 + k], t=pf[:, 4 + k:], b0=b0, d=d, b=b)
    return out, [first, float(np.sqrt(np.mean(sol.fun ** 2)))]


def _fix_gauges(p: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Unit d_k and b_k (scale into alpha), zero-mean alphas (into B0), mean rotation = identity."""
    d, b, alpha, b0 = p["d"], p["b"], p["alpha"], p["b0"]
    dn = np.linalg.norm(d, axis=1)
    bn = np.linalg.norm(b, axis=1)
    dn[dn == 0] = 1.0
    bn[bn == 0] = 1.0
    d, b, alpha = d / dn[:, None], b / bn[:, None], alpha * (dn * bn)[None]
    b0 = b0 + np.einsum("k,kd,kl->dl", alpha.mean(0), d, b)
    alpha = alpha - alpha.mean(0)
    rots = _rotation_np(p["theta"])
    u, _, vt = np.linalg.svd(rots.sum(0))
    r_mean = u @ np.diag([1.0, 1.0, np.linalg.det(u @ vt)]) @ vt
    rots = rots @ r_mean.T                        # R_i S = (R_i R^T)(R S)
    theta = np.stack([euler_from_rotation(r) for r in rots])
    return dict(p, d=(r_mean @ d.T).T, b=b, alpha=alpha, b0=r_mean @ b0, theta=theta)


def fit_sparse_model(landmarks, n_basis: int, n_iter: int = 100) -> FitResult:
    """Estimate the rank-one NRSfM model and per-frame q from landmark tracks (N, 2, L).

    The estimation assumes scaled-orthographic cameras (k1 = k3, k2 = 0), which fixes the affine
    ambiguity of the factorization; q keeps the general K so the regressor and the edits may use it.
    """
    x = np.asarray(landmarks, dtype=np.float64)
    if x.ndim != 3 or x.shape[1] != 2:
        raise ValueError(f"landmarks must be (N, 2, L), got shape {x.shape}")
    n, _, n_lm = x.shape
    if not np.all(np.isfinite(x)):
        raise ValueError("landmarks hold NaN (a frame without detection?); drop those frames first")
    if n_basis < 0 or 3 + n_basis > min(2 * n, n_lm):
        raise ValueError(f"n_basis must be in [0, min(2N, L) - 3 = {min(2 * n, n_lm) - 3}], got {n_basis}")
    init = _initial_fit(x - x.mean(2, keepdims=True), n_basis)
    params, history = _refine(x, init, n_iter)
    p = _fix_gauges(params)
    s = p["scale"]
    q = np.concatenate([np.stack([s, np.zeros(n), s], 1), p["theta"], p["alpha"], p["t"]], axis=1)
    model = SparseModel(p["b0"], p["d"], p["b"])
    final = float(np.sqrt(np.mean((model.render_np(q) - x) ** 2)))
    logger.info(f"NRSfM: {n} frames, {n_lm} landmarks, {n_basis} rank-one bases; landmark RMS "
                f"{history[0]:.4g} after factorization, {final:.4g} after joint refinement")
    return FitResult(model=model, q=q, rms=final, history=history)


def fit_params(model: SparseModel, landmarks, q0=None) -> tuple[np.ndarray, float]:
    """q (8 + K,) minimising the landmark error of one frame (2, L); returns (q, RMS)."""
    y = np.asarray(landmarks, dtype=np.float64)
    if y.shape != (2, model.n_landmarks):
        raise ValueError(f"landmarks must be (2, {model.n_landmarks}), got {y.shape}")
    if q0 is None:
        scale = np.sqrt(np.mean((y - y.mean(1, keepdims=True)) ** 2) / max(np.mean(model.B0[:2] ** 2), 1e-300))
        q0 = np.concatenate([[scale, 0.0, scale], np.zeros(3), np.zeros(model.n_basis), y.mean(1)])

    def residual(q):
        return (model.render_np(q) - y).reshape(-1)

    sol = scipy.optimize.least_squares(residual, np.asarray(q0, dtype=np.float64), method="lm")
    return sol.x, float(np.sqrt(np.mean(sol.fun ** 2)))


# ----------------------------------------------------------------------------------------------
# regressor and edits


class LatentRegressor(nn.Module):
    """phi(w) = q: an MLP on standardised latents whose output is de-standardised with q's statistics."""

    def __init__(self, latent_dim: int, n_params: int, hidden: int = 256, n_hidden: int = 2):
        super().__init__()
        self.config = dict(latent_dim=latent_dim, n_params=n_params, hidden=hidden, n_hidden=n_hidden)
        layers, width = [], latent_dim
        for _ in range(n_hidden):
            layers += [nn.Linear(width, hidden), nn.SiLU()]
            width = hidden
        layers.append(nn.Linear(width, n_params))
        # start at q_mean for every w (the mean landmarks): a safe baseline for the landmark loss, whose
        # gradients through the camera and rotation are large far from it
        nn.init.zeros_(layers[-1].weight)
        nn.init.zeros_(layers[-1].bias)
        self.net = nn.Sequential(*layers)
        self.register_buffer("w_mean", torch.zeros(latent_dim))
        self.register_buffer("w_std", torch.ones(latent_dim))
        self.register_buffer("q_mean", torch.zeros(n_params))
        self.register_buffer("q_std", torch.ones(n_params))

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return self.q_mean + self.q_std * self.net((w - self.w_mean) / self.w_std)


def train_regressor(model: SparseModel, latents, landmarks, q_init=None, epochs: int = 200, lr: float = 1e-3,
                    batch: int = 64, warmup_epochs: int = 0, hidden: int = 256, weight_decay: float = 0.0,
                    seed: int = 0, progress: bool = True) -> tuple[LatentRegressor, list[float]]:
    """Train phi on (latents (N, D), landmarks psi(G(w)) (N, 2, L)) with the landmark loss.

    q_init (N, 8 + K), the per-frame parameters of the NRSfM fit, standardises the outputs (phi starts
    at their mean, i.e. the mean landmarks) and, with `warmup_epochs` > 0, first regresses them directly.
    Returns (phi, training landmark RMS per epoch).
    """
    torch.manual_seed(seed)
    w = torch.as_tensor(np.asarray(latents), dtype=torch.float32)
    y = torch.as_tensor(np.asarray(landmarks), dtype=torch.float32)
    if w.ndim != 2 or y.shape != (w.shape[0], 2, model.n_landmarks):
        raise ValueError(f"latents must be (N, D) and landmarks (N, 2, {model.n_landmarks}); got "
                         f"{tuple(w.shape)} and {tuple(y.shape)}")
    phi = LatentRegressor(w.shape[1], model.n_params, hidden=hidden)
    phi.w_mean.copy_(w.mean(0))
    phi.w_std.copy_(w.std(0).clamp_min(1e-6))
    q0 = None
    if q_init is not None:
        q0 = torch.as_tensor(np.asarray(q_init), dtype=torch.float32)
        if q0.shape != (w.shape[0], model.n_params):
            raise ValueError(f"q_init must be ({w.shape[0]}, {model.n_params}), got {tuple(q0.shape)}")
        phi.q_mean.copy_(q0.mean(0))
        phi.q_std.copy_(q0.std(0).clamp_min(1e-6))
    opt = torch.optim.AdamW(phi.net.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    history = []
    for epoch in tqdm(range(epochs), desc="NRSfM regressor", disable=not progress):
        order = torch.randperm(w.shape[0], generator=gen)
        total = 0.0
        for start in range(0, w.shape[0], batch):
            idx = order[start:start + batch]
            q = phi(w[idx])
            lm_loss = ((model.render(q) - y[idx]) ** 2).mean()
            loss = lm_loss
            if q0 is not None and epoch < warmup_epochs:
                loss = (((q - q0[idx]) / phi.q_std) ** 2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += lm_loss.item() * len(idx)
        history.append(float(np.sqrt(total / w.shape[0])))
    logger.info(f"NRSfM regressor: landmark RMS {history[0]:.4g} -> {history[-1]:.4g} over {epochs} epochs")
    return phi.eval(), history


def linear_edit(phi: Callable[[torch.Tensor], torch.Tensor], w0: torch.Tensor, q_target: torch.Tensor,
                rcond: float = 1e-6) -> torch.Tensor:
    """w = w0 + J^+ (q* - phi(w0)) with J = dphi/dw at w0 (forward mode); w0 (D,), q_target (P,)."""
    w0 = torch.as_tensor(w0)
    if w0.ndim != 1:
        raise ValueError(f"w0 must be one latent (D,), got shape {tuple(w0.shape)}")

    def single(v: torch.Tensor) -> torch.Tensor:
        return phi(v.unsqueeze(0))[0]

    with torch.no_grad():
        q0 = single(w0)
    q_target = torch.as_tensor(q_target, dtype=q0.dtype)
    if q_target.shape != q0.shape:
        raise ValueError(f"q_target must have shape {tuple(q0.shape)}, got {tuple(q_target.shape)}")
    j = jacfwd(single)(w0).detach()                         # (P, D)
    step = torch.linalg.pinv(j.double(), rtol=rcond) @ (q_target - q0).double()
    return (w0.double() + step).to(w0.dtype)


def gradient_edit(phi: Callable[[torch.Tensor], torch.Tensor], synthesize: Callable[[torch.Tensor], torch.Tensor],
                  w0: torch.Tensor, q_target: torch.Tensor, lam: float, steps: int = 100, lr: float = 0.01,
                  distance: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
                  weights: torch.Tensor | None = None) -> tuple[torch.Tensor, list[float]]:
    """argmin_w ||weights * (phi(w) - q*)||^2 + lam * D(G(w), G(w0)) by Adam from w0.

    synthesize maps (1, D) latents to images; D defaults to the mean squared pixel difference.
    `weights` (P,) balances parameters of different units (angles vs pixels). Returns (w, loss history).
    """
    if lam < 0:
        raise ValueError(f"lambda must be >= 0, got {lam}")
    w0 = torch.as_tensor(w0).detach()
    if w0.ndim != 1:
        raise ValueError(f"w0 must be one latent (D,), got shape {tuple(w0.shape)}")
    distance = distance or (lambda a, b: ((a - b) ** 2).mean())
    with torch.no_grad():
        img0 = synthesize(w0.unsqueeze(0))
    q_target = torch.as_tensor(q_target, dtype=w0.dtype)
    weights = torch.ones_like(q_target) if weights is None else torch.as_tensor(weights, dtype=w0.dtype)
    w = w0.clone().requires_grad_(True)
    opt = torch.optim.Adam([w], lr=lr)
    history = []
    for _ in range(steps):
        q = phi(w.unsqueeze(0))[0]
        loss = ((weights * (q - q_target)) ** 2).sum()
        if lam > 0:
            loss = loss + lam * distance(synthesize(w.unsqueeze(0)), img0)
        opt.zero_grad()
        loss.backward()
        opt.step()
        history.append(loss.item())
    return w.detach(), history
