"""`python -m editing <method> --checkpoint FILE --out DIR ...`: find directions, write them and edit grids.

Every method reads the generator through models.load (editing.sampling.load_generator) and writes
  DIR/<method>.npz (or boundary_<attr>.npy)   the directions, with what is needed to apply them
  DIR/<method>_grid_<j>.png                   rows = directions, columns = steps, one grid per base sample;
                                               the middle column is the unedited sample ("before")
  DIR/summary.json                            the numbers the method measured
Steps are in standard deviations of the sampled W along each direction, so grids of different methods
compare (the tensor and NRSfM methods use their own units, named in their help).
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from loguru import logger

from common.atomic import atomic_savez, atomic_torch_save, atomic_write_text
from common.logging import setup_logging
from editing import attributes, ganspace, interfacegan, nrsfm, resefa, sefa, tensor_model
from editing.grid import save_grid
from editing.sampling import load_generator, sample_latents, synthesize, to_wplus, w_to_image_fn

METHODS = ("interfacegan", "ganspace", "sefa", "resefa", "tensor_model", "nrsfm")


# ----------------------------------------------------------------------------------------------
# shared pieces


def _layers(text: str | None, n_latent: int) -> tuple[int, int]:
    """'START:STOP' (W+ layers, STOP exclusive) -> (start, stop); None = all layers."""
    if text is None:
        return 0, n_latent
    try:
        start, stop = (int(v) for v in text.split(":"))
    except ValueError:
        raise SystemExit(f"--layers must be START:STOP (e.g. 0:4), got {text!r}") from None
    if not 0 <= start < stop <= n_latent:
        raise SystemExit(f"--layers {text}: need 0 <= START < STOP <= {n_latent} (this generator's W+ layers)")
    return start, stop


def _steps(strength: float, n: int) -> np.ndarray:
    if n < 2:
        raise SystemExit(f"--steps must be >= 2, got {n}")
    return np.linspace(-strength, strength, n)


def _step_labels(steps: np.ndarray, unit: str) -> list[str]:
    return [("0 (before)" if abs(s) < 1e-9 else f"{s:+.2g}{unit}") for s in steps]


def _base_samples(bundle, args) -> np.ndarray:
    """The grids' base codes, W+ (n_show, L, D): from --base-latents (e.g. encoded sketches), else
    truncated samples seeded apart from the fitting samples."""
    if args.base_latents is not None:
        codes = np.load(args.base_latents, allow_pickle=False)
        try:
            return to_wplus(bundle, codes)[:args.n_show]
        except ValueError as e:
            raise SystemExit(f"--base-latents {args.base_latents}: {e}") from None
    w = sample_latents(bundle, args.n_show, seed=args.seed + 10_000, truncation=args.truncation, progress=False)[1]
    return to_wplus(bundle, w)


def _write_grids(bundle, out: Path, method: str, base: np.ndarray, edits, row_labels: list[str],
                 col_labels: list[str]) -> list[str]:
    """edits(wplus (1, L, D)) -> W+ codes (rows * cols, L, D); one grid per base code (W+ (n, L, D))."""
    paths = []
    for j, wp in enumerate(base):
        codes = edits(wp[None])
        images = synthesize(bundle, codes, progress=False)
        rows, cols = len(row_labels), len(col_labels)
        path = out / f"{method}_grid_{j}.png"
        save_grid(path, images.reshape(rows, cols, *images.shape[1:]), row_labels=row_labels, col_labels=col_labels)
        paths.append(str(path))
        logger.info(f"wrote {path}")
    return paths


def _direction_edits(directions: np.ndarray, sigmas: np.ndarray, steps: np.ndarray, layers: Sequence[int]):
    """W+ edits of the given layers: rows = directions, columns = steps (in units of each direction's sigma)."""
    idx = np.asarray(layers, dtype=int)

    def edits(wp: np.ndarray) -> np.ndarray:
        out = np.repeat(wp, len(directions) * len(steps), axis=0)
        shifts = (steps[None, :, None] * sigmas[:, None, None] * directions[:, None, :]).reshape(-1, wp.shape[2])
        out[:, idx] += shifts[:, None, :]
        return out
    return edits


def _projection_stds(w: np.ndarray, directions: np.ndarray) -> np.ndarray:
    return (w @ directions.T).std(0)


def _save_npz(path: Path, **arrays) -> None:
    atomic_savez(path, **arrays)
    logger.info(f"wrote {path}")


# ----------------------------------------------------------------------------------------------
# methods


def run_ganspace(args, bundle, out: Path) -> dict:
    layers = _layers(args.layers, bundle.n_latent)
    _, w = sample_latents(bundle, args.n_samples, seed=args.seed)
    model = ganspace.fit_model(w, args.n_components, incremental=args.incremental)
    model.save(out / "ganspace.npz", layers=np.array(layers))
    k = min(args.n_directions, args.n_components)
    steps = _steps(args.strength, args.steps)
    grids = _write_grids(bundle, out, "ganspace", _base_samples(bundle, args),
                         _direction_edits(model.components[:k], model.stds[:k], steps, range(*layers)),
                         [f"PC {i + 1}" for i in range(k)], _step_labels(steps, " sd"))
    return {"explained_variance_ratio": model.explained_variance_ratio.tolist(), "stds": model.stds.tolist(),
            "layers": list(layers), "grids": grids}


def run_sefa(args, bundle, out: Path) -> dict:
    layer_ids = None if args.sefa_layers is None else [int(v) for v in args.sefa_layers.split(",")]
    weights = sefa.style_weights(bundle.generator, layer_ids)
    directions, values = sefa.factorize(weights)
    used = layer_ids or sefa.style_layers(bundle.generator)
    _, w = sample_latents(bundle, args.n_samples, seed=args.seed)
    sigmas = _projection_stds(w, directions)
    _save_npz(out / "sefa.npz", directions=directions.astype(np.float32), values=values, layers=np.array(used),
              stds=sigmas)
    k = args.n_directions
    steps = _steps(args.strength, args.steps)
    # the factorised affines read exactly these W+ layers: edit those
    grids = _write_grids(bundle, out, "sefa", _base_samples(bundle, args),
                         _direction_edits(directions[:k], sigmas[:k], steps, used),
                         [f"eig {i + 1}" for i in range(k)], _step_labels(steps, " sd"))
    return {"eigenvalues": values[:16].tolist(), "layers": used, "grids": grids}


def _parse_region(text: str) -> tuple[float, float, float, float]:
    try:
        vals = tuple(float(v) for v in text.split(","))
    except ValueError:
        vals = ()
    if len(vals) != 4:
        raise SystemExit(f"--region must be x0,y0,x1,y1 in fractions of the image, got {text!r}")
    return vals


def run_resefa(args, bundle, out: Path) -> dict:
    size = bundle.output_size
    if args.mask:
        from PIL import Image

        mask = resefa.region_mask(size, size, mask=np.asarray(Image.open(args.mask).convert("L")))
    else:
        mask = resefa.region_mask(size, size, rect=_parse_region(args.region))
    _, w = sample_latents(bundle, max(args.n_samples, 2), seed=args.seed)
    directions, ratios = resefa.find_directions(w_to_image_fn(bundle), w[:args.n_jacobians], mask, reg=args.reg,
                                                n_directions=args.n_directions)
    sigmas = _projection_stds(w, directions)
    _save_npz(out / "resefa.npz", directions=directions.astype(np.float32), ratios=ratios, mask=mask, stds=sigmas)
    steps = _steps(args.strength, args.steps)
    grids = _write_grids(bundle, out, "resefa", _base_samples(bundle, args),
                         _direction_edits(directions, sigmas, steps, range(bundle.n_latent)),
                         [f"region {i + 1}" for i in range(len(directions))], _step_labels(steps, " sd"))
    return {"ratios": ratios.tolist(), "foreground_pixels": int(mask.sum()), "grids": grids}


def run_interfacegan(args, bundle, out: Path) -> dict:
    z, w = sample_latents(bundle, args.n_samples, seed=args.seed)
    latents = z if args.space == "z" else w
    images = synthesize(bundle, latents, space=args.space, progress=True)
    names = [args.attribute] + list(args.condition or [])
    scores = {n: attributes.compute(n, images) for n in names}
    fits = {n: interfacegan.fit_boundary(latents, scores[n], ratio=args.ratio, seed=args.seed) for n in names}
    primary = fits[args.attribute].normal
    interfacegan.save_boundary(out / f"boundary_{args.attribute}.npy", primary)
    rows = [(args.attribute, primary)]
    if args.condition:
        cond = interfacegan.project_boundary(primary, *(fits[c].normal for c in args.condition))
        name = f"{args.attribute}_cond_{'_'.join(args.condition)}"
        interfacegan.save_boundary(out / f"boundary_{name}.npy", cond)
        rows.append((f"{args.attribute} | {', '.join(args.condition)}", cond))
    sigma = float(np.std(latents @ primary[0]))
    steps = _steps(args.strength, args.steps)
    if args.space == "z":   # Z grids: codes at absolute distances from the hyperplane (Shen et al.)
        if args.base_latents is not None:
            raise SystemExit("--base-latents are W / W+ codes; use them with --space w")
        base_z = sample_latents(bundle, args.n_show, seed=args.seed + 10_000, progress=False)[0]
        paths = []
        for j, zj in enumerate(base_z):
            codes = np.concatenate([interfacegan.interpolate(zj, n, steps[0], steps[-1], len(steps), "z")
                                    for _, n in rows])
            imgs = synthesize(bundle, codes, space="z")
            paths.append(str(out / f"interfacegan_grid_{j}.png"))
            save_grid(paths[-1], imgs.reshape(len(rows), len(steps), *imgs.shape[1:]),
                      row_labels=[r for r, _ in rows], col_labels=[f"{s:+.2g}" for s in steps])
    else:
        paths = _write_grids(bundle, out, "interfacegan", _base_samples(bundle, args),
                             lambda wp: np.stack([interfacegan.edit(wp, n, s * sigma)[0] for _, n in rows for s in steps]),
                             [r for r, _ in rows], _step_labels(steps, " sd"))
    return {"space": args.space, "sigma": sigma, "grids": paths,
            "fits": {n: {"train_accuracy": f.train_accuracy, "val_accuracy": f.val_accuracy,
                         "n_per_class": f.n_per_class} for n, f in fits.items()},
            "score_ranges": {n: [float(np.min(s)), float(np.max(s))] for n, s in scores.items()}}


def run_tensor_model(args, bundle, out: Path) -> dict:
    if args.latents:
        with np.load(args.latents, allow_pickle=False) as f:
            if "latents" not in f or "modes" not in f:
                raise SystemExit(f"{args.latents}: needs arrays 'latents' (n_1, ..., n_k, [L,] D) and 'modes' "
                                 f"(k mode names); found {sorted(f.files)}")
            latents, modes = f["latents"], [str(m) for m in f["modes"]]
    else:
        from editing.structured import drawing_transform_tensor

        sketches = None
        if args.sketches is not None:
            sketches = torch.from_numpy(np.load(args.sketches, allow_pickle=False)).float()
            if sketches.ndim != 4 or sketches.shape[1] != 1:
                raise SystemExit(f"--sketches {args.sketches}: expected [N, 1, S, S] in [0, 1], got "
                                 f"{tuple(sketches.shape)}")
        latents, modes = drawing_transform_tensor(bundle, n_persons=args.persons, levels=args.levels,
                                                  steps=args.inversion_steps, seed=args.seed, sketches=sketches)
        _save_npz(out / "structured_latents.npz", latents=latents, modes=np.array(modes))
    ranks = dict(_parse_rank(r) for r in (args.rank or []))
    wplus = latents.ndim == len(modes) + 2
    model = (tensor_model.StackedTensorModel if wplus else tensor_model.TensorModel).fit(latents, modes, ranks)
    intensity = args.intensity if args.intensity in modes else None
    dirs = model.expression_directions(expression=args.expression, intensity=intensity, neutral=args.neutral)
    dirs_wp = dirs if wplus else np.repeat(dirs[:, None], bundle.n_latent, 1)
    extra = {}
    if intensity is not None:
        apathy, apathy_rms = model.apathy_from_levels(args.expression, intensity)
        extra = {"apathy": apathy.astype(np.float32)}
        logger.info(f"point of apathy: the expression lines pass it at rms distance {apathy_rms:.4g}")
    _save_npz(out / "tensor_model.npz", directions=dirs_wp.astype(np.float32), modes=np.array(modes), **extra)
    steps = _steps(args.strength, args.steps)

    def edits(wp):
        return np.stack([wp[0] + s * d for d in dirs_wp for s in steps])

    names = args.expression_names.split(",") if args.expression_names else [f"{args.expression} {i}"
                                                                            for i in range(len(dirs))]
    if len(names) != len(dirs):
        raise SystemExit(f"--expression-names lists {len(names)} names for {len(dirs)} expressions")
    grids = _write_grids(bundle, out, "tensor_model", _base_samples(bundle, args), edits, names,
                         _step_labels(steps, "x"))
    return {"modes": modes, "shape": list(latents.shape), "ranks": ranks, "grids": grids,
            "apathy_rms_distance": apathy_rms if intensity is not None else None,
            "direction_norms": np.linalg.norm(dirs_wp.reshape(len(dirs), -1), axis=1).tolist()}


def _parse_rank(text: str) -> tuple[str, int]:
    name, _, value = text.partition("=")
    if not value.isdigit():
        raise SystemExit(f"--rank must be MODE=INT (e.g. intensity=2), got {text!r}")
    return name, int(value)


def _landmark_detector(args):
    from editing import landmarks

    if args.landmarks == "mediapipe":
        if not args.task:
            raise SystemExit("--landmarks mediapipe needs --task FILE (MediaPipe face_landmarker.task)")
        return landmarks.MediaPipeLandmarks(args.task)
    return landmarks.InkHullLandmarks(n_landmarks=args.n_landmarks)


def run_nrsfm(args, bundle, out: Path) -> dict:
    psi = _landmark_detector(args)
    _, w = sample_latents(bundle, args.n_samples, seed=args.seed)
    images = synthesize(bundle, w, progress=True)
    lm = np.concatenate([psi(images[i:i + 64]) for i in range(0, len(images), 64)])
    ok = np.isfinite(lm).all((1, 2))
    if ok.sum() < 10:
        raise SystemExit(f"the landmark detector found landmarks in only {int(ok.sum())} of {len(lm)} samples")
    fit = nrsfm.fit_sparse_model(lm[ok], n_basis=args.n_basis)
    phi, hist = nrsfm.train_regressor(fit.model, w[ok], lm[ok], q_init=fit.q, epochs=args.epochs, seed=args.seed)
    names = nrsfm.param_names(fit.model.n_basis)
    fit.model.save(out / "nrsfm_model.npz", q_mean=fit.q.mean(0), q_std=fit.q.std(0))
    # steps in sd of the regressor's own predictions over the samples: targets it can reach without
    # leaving the latents it was trained on
    with torch.no_grad():
        q_std = phi(torch.tensor(w, dtype=torch.float32)).std(0).numpy()
    atomic_torch_save({"config": phi.config, "state_dict": phi.state_dict(), "param_names": names},
                      out / "nrsfm_regressor.pt")
    rows = args.params.split(",")
    unknown = [r for r in rows if r not in names]
    if unknown:
        raise SystemExit(f"--params {unknown} unknown; parameters are {', '.join(names)}")
    steps = _steps(args.strength, args.steps)
    achieved, step_norms = [], []
    w_spread = float(np.sqrt(np.sum(w.var(0))))

    def edits(wp):
        # phi reads W; a W+ code is edited by the step found at its layer average, added to every layer
        w0 = torch.tensor(wp[0].mean(0), dtype=torch.float32)
        with torch.no_grad():
            q0 = phi(w0[None])[0]
        codes = []
        for name in rows:
            i = names.index(name)
            for s in steps:
                target = q0.clone()
                target[i] += float(s * q_std[i])
                w1 = nrsfm.linear_edit(phi, w0, target)
                with torch.no_grad():
                    achieved.append(float((phi(w1[None])[0][i] - q0[i]) / q_std[i]))
                step_norms.append(float((w1 - w0).norm() / w_spread))
                codes.append(wp[0] + (w1 - w0).numpy()[None])
        return np.stack(codes)

    grids = _write_grids(bundle, out, "nrsfm", _base_samples(bundle, args), edits, rows, _step_labels(steps, " sd"))
    return {"landmarks": args.landmarks, "frames": int(ok.sum()), "fit_rms": fit.rms, "factorization_rms":
            fit.history[0], "regressor_rms_first_last": [hist[0], hist[-1]], "grids": grids,
            "requested_steps_sd": steps.tolist(), "achieved_steps_sd": achieved,
            "latent_step_over_w_spread": step_norms}


# ----------------------------------------------------------------------------------------------
# parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m editing", description=__doc__.split("\n\n")[0] + " Methods: "
                                     + ", ".join(METHODS) + ", and hspace (diffusion h-space, its own options).",
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="method", required=True, metavar="METHOD")

    def common(p: argparse.ArgumentParser, n_samples: int, strength: float) -> None:
        p.add_argument("--checkpoint", required=True, type=Path, help="any checkpoint models.load reads")
        p.add_argument("--out", required=True, type=Path, help="output folder (created)")
        p.add_argument("--seed", type=int, default=0)
        p.add_argument("--device", default="cpu")
        p.add_argument("--n-samples", type=int, default=n_samples, help="latents sampled for fitting")
        p.add_argument("--n-show", type=int, default=2, help="base samples = grids written")
        p.add_argument("--steps", type=int, default=7, help="grid columns")
        p.add_argument("--strength", type=float, default=strength, help="grid spans [-strength, strength]")
        p.add_argument("--truncation", type=float, default=0.7, help="truncation of the grids' base samples")
        p.add_argument("--base-latents", type=Path, help=".npy of W (N, D) or W+ (N, L, D) codes to edit in the "
                                                         "grids instead of samples (e.g. encoded sketches)")
        p.add_argument("--log-level", default="INFO")

    p = sub.add_parser("ganspace", help="PCA of sampled W (Härkönen et al. 2020)")
    common(p, 10_000, 3.0)
    p.add_argument("--n-components", type=int, default=16)
    p.add_argument("--n-directions", type=int, default=5, help="grid rows")
    p.add_argument("--layers", help="W+ layers START:STOP the edit applies to (default all)")
    p.add_argument("--incremental", action="store_true", help="IncrementalPCA (large --n-samples)")

    p = sub.add_parser("sefa", help="closed-form factorization of the style affines (Shen & Zhou 2021)")
    common(p, 2_000, 3.0)
    p.add_argument("--sefa-layers", help="comma-separated W+ indices to factorize (default all conv layers)")
    p.add_argument("--n-directions", type=int, default=5)

    p = sub.add_parser("resefa", help="region-based directions (generalized eigenproblem of Jacobian Grams)")
    common(p, 2_000, 3.0)
    p.add_argument("--region", default="0.25,0.25,0.75,0.75", help="x0,y0,x1,y1 in fractions of the image")
    p.add_argument("--mask", help="a mask image instead of --region (non-zero = region)")
    p.add_argument("--n-jacobians", type=int, default=4, help="latents whose Jacobians are summed")
    p.add_argument("--reg", type=float, default=1e-3)
    p.add_argument("--n-directions", type=int, default=4)

    p = sub.add_parser("interfacegan", help="SVM boundary of a computed attribute (Shen et al. 2020)")
    common(p, 4_000, 3.0)
    p.add_argument("--attribute", default="ink", choices=sorted(attributes.ATTRIBUTES))
    p.add_argument("--condition", action="append", choices=sorted(attributes.ATTRIBUTES),
                   help="attribute(s) to hold fixed (repeatable)")
    p.add_argument("--ratio", type=float, default=0.02, help="share kept at each end of the scores")
    p.add_argument("--space", choices=("w", "z"), default="w")

    p = sub.add_parser("tensor_model", help="HOSVD tensor model of a structured latent set (Papers I/II)")
    common(p, 0, 1.0)
    p.add_argument("--latents", type=Path, help=".npz with 'latents' (n_1..n_k, [L,] D) and 'modes'; default: "
                                                 "build a drawings set (persons x transforms x levels) by inversion")
    p.add_argument("--sketches", type=Path, help=".npy sketches [N, 1, S, S] in [0, 1] (paper = 1) embedded by the "
                                                 "checkpoint's encoder as the persons of the built set")
    p.add_argument("--persons", type=int, default=6)
    p.add_argument("--levels", type=int, default=3)
    p.add_argument("--inversion-steps", type=int, default=150)
    p.add_argument("--rank", action="append", help="MODE=INT truncation (repeatable), e.g. intensity=2")
    p.add_argument("--expression", default="expression")
    p.add_argument("--intensity", default="intensity", help="the intensity mode (ignored if absent)")
    p.add_argument("--neutral", type=int, default=None, help="neutral expression row (without intensity mode)")
    p.add_argument("--expression-names", help="comma-separated grid row labels")

    p = sub.add_parser("nrsfm", help="NRSfM landmark model + regressor edits (Paper III)")
    common(p, 600, 2.0)
    p.add_argument("--landmarks", choices=("ink", "mediapipe"), default="ink")
    p.add_argument("--task", help="MediaPipe face_landmarker.task (with --landmarks mediapipe)")
    p.add_argument("--n-landmarks", type=int, default=16, help="ink landmarks per drawing")
    p.add_argument("--n-basis", type=int, default=3)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--params", default="theta_x,theta_y,theta_z,alpha_1", help="grid rows: q entries to edit")
    return parser


RUNNERS = {"ganspace": run_ganspace, "sefa": run_sefa, "resefa": run_resefa, "interfacegan": run_interfacegan,
           "tensor_model": run_tensor_model, "nrsfm": run_nrsfm}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "hspace":
        from editing.hspace.cli import main as hspace_main   # diffusion h-space lives in its own package

        return hspace_main(argv[1:])
    args = build_parser().parse_args(argv)
    setup_logging(level=args.log_level)
    torch.manual_seed(args.seed)
    args.out.mkdir(parents=True, exist_ok=True)
    bundle = load_generator(args.checkpoint, device=args.device)
    logger.info(f"{args.method}: {args.checkpoint} ({bundle.meta.get('format')}), {bundle.output_size} px, "
                f"W+ {bundle.n_latent} x {bundle.style_dim}")
    summary = RUNNERS[args.method](args, bundle, args.out)
    summary = {"method": args.method, "checkpoint": str(args.checkpoint), "seed": args.seed, **summary}
    atomic_write_text(args.out / "summary.json", json.dumps(summary, indent=2))
    logger.info(f"wrote {args.out / 'summary.json'}")
    return 0
