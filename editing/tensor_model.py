"""Multilinear (Tucker / HOSVD) models of a structured latent data set: René Haas's thesis, Papers I and II
("Tensor-based Subspace Factorization for StyleGAN", FG 2021; "Tensor-based Emotion Editing in the
StyleGAN Latent Space", CVPR-W 2022).

A structured set of faces (persons x expressions [x intensities] x rotations) is embedded into latent
space and arranged as a data tensor T (latent x person x expression x ...). After subtracting the mean
latent, the HOSVD T = S x1 U1 x2 U2 ... xn Un factors it; with M = S x1 U1 the model is

    w(p2, ..., pn) = mean + M x2 p2 x3 p3 ... xn pn

where row i of U_j is the parameter of the i-th person / expression / ... . Truncating a mode keeps its
leading columns (a compact subspace). The style-separated stacked model fits one such model per W+
layer, because different layers control different aspects of the image (Paper I, Sec. III-C).

Estimating the parameters of a new latent w (thesis Eq. 3.12, as we implement it) minimises

    || w - mean - M x2 p2 ... xn pn ||^2  +  sum_j  lambda_j ||p_j||^2  +  mu_j (1^T U_j p_j - 1)^2

by alternating least squares: with all other parameters fixed the problem in p_j is a ridge regression
with one extra linear penalty, solved in closed form. The sum-to-one term asks p_j to be an affine
combination of the training rows (alpha = U_j p_j sums to one); it also fixes the scale gauge of the
multilinear product (p_j c, p_k / c), so the estimate is unique.

Global expression directions (thesis Eq. 3.16, as we implement it): with the intensity mode truncated
(rank 2 keeps a level-independent and a level-linear pattern), an expression's path over its levels is a
straight line; at the mean person (and the mean of the other modes) its direction is

    d_e = M x_person p_mean x_expression u_e x_intensity (u_top - u_bottom) x ...

which is added to any latent: w + s d_e. Without an intensity mode the directions go from a neutral
expression row to each expression row. The "point of apathy" (Paper I) is the point where the lines
traced by the expression levels in the (truncated) expression subspace meet: the least-squares point
closest to all of them.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import tensorly as tl
from loguru import logger
from tensorly.tenalg import multi_mode_dot

__all__ = ["hosvd", "reconstruct", "TensorModel", "StackedTensorModel", "Estimate", "lines_meeting_point"]


def hosvd(T, ranks: Sequence[int | None] | None = None) -> tuple[np.ndarray, list[np.ndarray]]:
    """Higher-order SVD: (core, factors) with T = core x1 U1 x2 U2 ... xn Un (exact without truncation).

    U_n holds the leading left singular vectors of the mode-n unfolding; `ranks` truncates modes (None
    or a None entry keeps the full rank of that mode). The core is all-orthogonal.
    """
    t = np.asarray(T, dtype=np.float64)
    if t.ndim < 2:
        raise ValueError(f"hosvd needs a tensor of order >= 2, got shape {t.shape}")
    ranks = [None] * t.ndim if ranks is None else list(ranks)
    if len(ranks) != t.ndim:
        raise ValueError(f"ranks has {len(ranks)} entries for a tensor of order {t.ndim}")
    factors = []
    for mode, r in enumerate(ranks):
        u, s, _ = np.linalg.svd(tl.unfold(t, mode), full_matrices=False)
        full = u.shape[1]
        if r is not None and not 1 <= r <= full:
            raise ValueError(f"rank of mode {mode} must be in [1, {full}], got {r}")
        factors.append(u[:, :(r or full)])
    core = multi_mode_dot(t, factors, transpose=True)
    return core, factors


def reconstruct(core: np.ndarray, factors: Sequence[np.ndarray]) -> np.ndarray:
    """core x1 U1 x2 U2 ... xn Un."""
    return multi_mode_dot(np.asarray(core), list(factors))


@dataclass
class Estimate:
    params: dict[str, np.ndarray]     # mode name -> parameter vector
    residual: float                   # || w - model(params) ||
    history: list[float] = field(default_factory=list)   # objective after every sweep


def _contract(m: np.ndarray, vectors: Sequence[np.ndarray | None]) -> np.ndarray:
    """M (D, r_1..r_k) contracted with the given vectors on modes 1..k; None leaves a mode open."""
    out = m
    for j in reversed(range(len(vectors))):   # from the last mode, so earlier axis numbers stay valid
        if vectors[j] is not None:
            out = np.tensordot(out, vectors[j], axes=([j + 1], [0]))
    return out


@dataclass
class TensorModel:
    """w = mean + M x_1 p_1 ... x_k p_k over named modes (the latent is axis 0 of M)."""

    mean: np.ndarray                  # (D,)
    M: np.ndarray                     # (D, r_1, ..., r_k)
    factors: list[np.ndarray]         # U_j (n_j, r_j)
    mode_names: tuple[str, ...]

    @classmethod
    def fit(cls, latents, mode_names: Sequence[str], ranks: Mapping[str, int] | None = None,
            quiet: bool = False) -> "TensorModel":
        """Fit on latents shaped (n_1, ..., n_k, D): one latent per combination of the modes' indices."""
        x = np.asarray(latents, dtype=np.float64)
        names = tuple(mode_names)
        if x.ndim != len(names) + 1:
            raise ValueError(f"latents must be (n_1, ..., n_k, D) with one axis per mode {list(names)}; "
                             f"got shape {x.shape}")
        if len(set(names)) != len(names):
            raise ValueError(f"mode names must be distinct, got {list(names)}")
        if not np.all(np.isfinite(x)):
            raise ValueError("latents hold NaN or infinite values")
        ranks = dict(ranks or {})
        unknown = sorted(set(ranks) - set(names))
        if unknown:
            raise ValueError(f"ranks name unknown modes {unknown}; modes are {list(names)}")
        d = x.shape[-1]
        mean = x.reshape(-1, d).mean(0)
        t = np.moveaxis(x - mean, -1, 0)
        _, factors = hosvd(t, [None] + [ranks.get(n) for n in names])
        m = multi_mode_dot(t, factors[1:], modes=list(range(1, t.ndim)), transpose=True)
        model = cls(mean=mean, M=m, factors=factors[1:], mode_names=names)
        if not quiet:
            logger.info(f"tensor model: modes {dict(zip(names, x.shape[:-1]))}, ranks "
                        f"{dict(zip(names, m.shape[1:]))}, relative reconstruction error {model.relative_error(x):.3e}")
        return model

    def relative_error(self, latents) -> float:
        """||reconstruction - data|| / ||data - mean|| on the fitted data (0 without truncation)."""
        x = np.asarray(latents, dtype=np.float64)
        return float(np.linalg.norm(self.reconstruct() - x) / max(np.linalg.norm(x - self.mean), 1e-300))

    @property
    def dim(self) -> int:
        return self.M.shape[0]

    def mode(self, name: str) -> int:
        if name not in self.mode_names:
            raise KeyError(f"unknown mode {name!r}; modes are {list(self.mode_names)}")
        return self.mode_names.index(name)

    def mean_params(self) -> dict[str, np.ndarray]:
        """The average training row of every mode (the parameter of the 'mean person', ...)."""
        return {n: u.mean(0) for n, u in zip(self.mode_names, self.factors)}

    def row(self, name: str, index: int) -> np.ndarray:
        return self.factors[self.mode(name)][index]

    def _vectors(self, params: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        base = self.mean_params()
        unknown = sorted(set(params) - set(self.mode_names))
        if unknown:
            raise KeyError(f"unknown modes {unknown}; modes are {list(self.mode_names)}")
        out = []
        for n, u in zip(self.mode_names, self.factors):
            v = np.asarray(params.get(n, base[n]), dtype=np.float64).reshape(-1)
            if v.shape[0] != u.shape[1]:
                raise ValueError(f"parameter of mode {n!r} must have {u.shape[1]} entries, got {v.shape[0]}")
            out.append(v)
        return out

    def synthesize(self, params: Mapping[str, np.ndarray] | None = None) -> np.ndarray:
        """The latent (D,) for the given parameters; modes left out take their mean row."""
        return self.mean + _contract(self.M, self._vectors(params or {}))

    def reconstruct(self) -> np.ndarray:
        """The model's latents for every training combination, shaped like the fitted data."""
        t = multi_mode_dot(self.M, self.factors, modes=list(range(1, self.M.ndim)))
        return np.moveaxis(t, 0, -1) + self.mean

    def _per_mode(self, value: float | Mapping[str, float], what: str) -> dict[str, float]:
        """One weight per mode from a scalar or a {mode: weight} mapping (absent modes weigh 0)."""
        if not isinstance(value, Mapping):
            return {n: float(value) for n in self.mode_names}
        unknown = sorted(set(value) - set(self.mode_names))
        if unknown:
            raise KeyError(f"{what} names unknown modes {unknown}; modes are {list(self.mode_names)}")
        return {n: float(value.get(n, 0.0)) for n in self.mode_names}

    def estimate(self, w, ridge: float | Mapping[str, float] = 1e-3, sum_to_one: float | Mapping[str, float] = 1.0,
                 fixed: Mapping[str, np.ndarray] | None = None, n_iter: int = 100, tol: float = 1e-10,
                 init: Mapping[str, np.ndarray] | None = None) -> Estimate:
        """Parameters of a new latent w (D,) by alternating least squares (module docstring, Eq. 3.12).

        ridge / sum_to_one: one weight for all modes or per mode name; `fixed` modes are not estimated.
        """
        w = np.asarray(w, dtype=np.float64).reshape(-1)
        if w.shape[0] != self.dim:
            raise ValueError(f"w must have {self.dim} entries, got {w.shape[0]}")
        fixed = dict(fixed or {})
        lam = self._per_mode(ridge, "ridge")
        mu = self._per_mode(sum_to_one, "sum_to_one")
        p = self._vectors({**(init or {}), **fixed})
        y = w - self.mean
        free = [j for j, n in enumerate(self.mode_names) if n not in fixed]
        if not free:
            raise ValueError("every mode is fixed; nothing to estimate")
        history = []

        def objective() -> float:
            r = y - _contract(self.M, p)
            val = float(r @ r)
            for j, n in enumerate(self.mode_names):
                if n in fixed:
                    continue
                c = self.factors[j].sum(0)
                val += lam[n] * float(p[j] @ p[j]) + mu[n] * (float(c @ p[j]) - 1.0) ** 2
            return val

        for _ in range(n_iter):
            for j in free:
                n = self.mode_names[j]
                a = _contract(self.M, [None if i == j else p[i] for i in range(len(p))])   # (D, r_j)
                c = self.factors[j].sum(0)                                                 # U_j^T 1
                lhs = a.T @ a + lam[n] * np.eye(a.shape[1]) + mu[n] * np.outer(c, c)
                rhs = a.T @ y + mu[n] * c
                p[j] = np.linalg.lstsq(lhs, rhs, rcond=None)[0]
            history.append(objective())
            if len(history) > 1 and history[-2] - history[-1] <= tol * max(history[-2], 1e-300):
                break
        params = dict(zip(self.mode_names, p))
        residual = float(np.linalg.norm(y - _contract(self.M, p)))
        return Estimate(params=params, residual=residual, history=history)

    def expression_directions(self, expression: str = "expression", intensity: str | None = "intensity",
                              neutral: int | None = None, levels: tuple[int, int] = (0, -1)) -> np.ndarray:
        """Global directions (E, D), one per expression row (module docstring, Eq. 3.16).

        With an intensity mode: the model's change from intensity row levels[0] to levels[1] at each
        expression, the other modes at their mean. Truncate the intensity mode (rank 2 keeps a
        level-independent and a level-linear pattern) so that the expression paths are straight lines.
        Without one (intensity=None): expression row e minus the `neutral` row.
        """
        ue = self.factors[self.mode(expression)]
        rows = range(ue.shape[0])
        if intensity is not None:
            us = self.factors[self.mode(intensity)]
            lo, hi = us[levels[0]], us[levels[1]]
            return np.stack([self.synthesize({expression: ue[e], intensity: hi})
                             - self.synthesize({expression: ue[e], intensity: lo}) for e in rows])
        if neutral is None:
            raise ValueError("without an intensity mode, give the index of the neutral expression row")
        base = self.synthesize({expression: ue[neutral]})
        return np.stack([self.synthesize({expression: ue[e]}) - base for e in rows])

    def mode_rank(self, name: str, rtol: float = 1e-10) -> int:
        """Numerical rank of the model along a mode (columns of U beyond it carry no data)."""
        j = self.mode(name)
        sv = np.linalg.svd(tl.unfold(self.M, j + 1), compute_uv=False)
        return int(np.sum(sv > rtol * sv[0])) if sv.size and sv[0] > 0 else 0

    def apathy_point(self, groups: Sequence[Sequence[int]], expression: str = "expression", rank: int | None = None
                     ) -> tuple[np.ndarray, np.ndarray, float]:
        """The point of apathy: (latent (D,), expression parameter, rms distance to the lines).

        groups: for each emotion, the expression-row indices of its intensity levels. Each group's rows of
        U_expression, restricted to the leading `rank` columns (default: the mode's numerical rank), span a
        line (its principal direction); the point closest to all lines, with the remaining columns zero
        and the other modes at their mean, is the apathetic face.
        """
        ue = self.factors[self.mode(expression)]
        r = rank or self.mode_rank(expression)
        if not 1 <= r <= ue.shape[1]:
            raise ValueError(f"rank must be in [1, {ue.shape[1]}], got {r}")
        point, dist = lines_meeting_point([ue[list(g), :r] for g in groups])
        param = np.zeros(ue.shape[1])
        param[:r] = point
        return self.synthesize({expression: param}), param, dist

    def apathy_from_levels(self, expression: str = "expression", intensity: str = "intensity"
                           ) -> tuple[np.ndarray, float]:
        """The point of apathy with separate expression and intensity modes: (latent (D,), rms distance).

        At the mean of the other modes, each expression's latents over the intensity rows lie on a line
        (exactly, with the intensity mode truncated to rank 2); the latent closest to all these lines is
        where the expressions meet.
        """
        ue, us = self.factors[self.mode(expression)], self.factors[self.mode(intensity)]
        groups = [np.stack([self.synthesize({expression: e, intensity: s}) for s in us]) for e in ue]
        return lines_meeting_point(groups)


def lines_meeting_point(groups: Sequence[np.ndarray]) -> tuple[np.ndarray, float]:
    """Least-squares point closest to the lines fitted through each group of points (n_i >= 2, d).

    A line is the group's mean plus its first principal direction; the point minimises the summed
    squared distances, sum_i ||(I - v_i v_i^T)(x - m_i)||^2. Returns (point (d,), rms distance).
    """
    if len(groups) < 2:
        raise ValueError(f"lines meet only if there are at least 2 groups, got {len(groups)}")
    d = np.asarray(groups[0]).shape[1]
    lhs, rhs, projectors = np.zeros((d, d)), np.zeros(d), []
    for i, g in enumerate(groups):
        g = np.asarray(g, dtype=np.float64)
        if g.ndim != 2 or g.shape[0] < 2 or g.shape[1] != d:
            raise ValueError(f"groups[{i}] must hold >= 2 points of dimension {d}, got shape {g.shape}")
        m = g.mean(0)
        v = np.linalg.svd(g - m, full_matrices=False)[2][0]
        proj = np.eye(d) - np.outer(v, v)
        lhs += proj
        rhs += proj @ m
        projectors.append((proj, m))
    point = np.linalg.lstsq(lhs, rhs, rcond=None)[0]
    rms = float(np.sqrt(np.mean([np.sum((p @ (point - m)) ** 2) for p, m in projectors])))
    return point, rms


@dataclass
class StackedTensorModel:
    """The style-separated stacked model: one TensorModel per W+ layer (Paper I, Sec. III-C)."""

    layers: list[TensorModel]

    @classmethod
    def fit(cls, latents, mode_names: Sequence[str], ranks: Mapping[str, int] | None = None
            ) -> "StackedTensorModel":
        """latents shaped (n_1, ..., n_k, L, D): W+ codes of the structured data set."""
        x = np.asarray(latents, dtype=np.float64)
        if x.ndim != len(mode_names) + 2:
            raise ValueError(f"latents must be (n_1, ..., n_k, L, D) with one axis per mode {list(mode_names)} "
                             f"then W+ layers and style_dim; got shape {x.shape}")
        layers = [TensorModel.fit(x[..., layer, :], mode_names, ranks, quiet=True) for layer in range(x.shape[-2])]
        errors = [m.relative_error(x[..., i, :]) for i, m in enumerate(layers)]
        logger.info(f"stacked tensor model: {len(layers)} layers, modes {dict(zip(mode_names, x.shape[:-2]))}, "
                    f"ranks {dict(zip(mode_names, layers[0].M.shape[1:]))}, relative reconstruction error per "
                    f"layer {min(errors):.3e} .. {max(errors):.3e}")
        return cls(layers)

    def synthesize(self, params: Sequence[Mapping[str, np.ndarray]] | Mapping[str, np.ndarray] | None = None
                   ) -> np.ndarray:
        """W+ (L, D); params is one mapping per layer, or one shared mapping of mean-row overrides."""
        per_layer = self._per_layer(params)
        return np.stack([m.synthesize(p) for m, p in zip(self.layers, per_layer)])

    def _per_layer(self, params):
        if params is None or isinstance(params, Mapping):
            return [params or {}] * len(self.layers)
        if len(params) != len(self.layers):
            raise ValueError(f"give one parameter mapping per layer ({len(self.layers)}), got {len(params)}")
        return list(params)

    def estimate(self, wplus, **kwargs) -> list[Estimate]:
        """Per-layer ALS estimates for a W+ code (L, D); kwargs as TensorModel.estimate."""
        x = np.asarray(wplus, dtype=np.float64)
        if x.shape != (len(self.layers), self.layers[0].dim):
            raise ValueError(f"wplus must be ({len(self.layers)}, {self.layers[0].dim}), got {x.shape}")
        return [m.estimate(x[i], **kwargs) for i, m in enumerate(self.layers)]

    def expression_directions(self, **kwargs) -> np.ndarray:
        """(E, L, D): TensorModel.expression_directions per layer, stacked on the layer axis."""
        return np.stack([m.expression_directions(**kwargs) for m in self.layers], axis=1)

    def apathy_point(self, groups: Sequence[Sequence[int]], expression: str = "expression",
                     rank: int | None = None) -> np.ndarray:
        """W+ (L, D) of the apathetic face, layer by layer."""
        return np.stack([m.apathy_point(groups, expression, rank)[0] for m in self.layers])

    def apathy_from_levels(self, expression: str = "expression", intensity: str = "intensity"
                           ) -> tuple[np.ndarray, float]:
        """W+ (L, D) where the expressions' intensity lines meet, layer by layer, and the rms distance."""
        out = [m.apathy_from_levels(expression, intensity) for m in self.layers]
        return np.stack([p for p, _ in out]), float(np.sqrt(np.mean([d ** 2 for _, d in out])))
