"""Sketch fidelity: does the generated image honour the visitor's lines?

The lines of a generated image are extracted with the same pipeline that made the training sketches
(pencil filter -> simplifier -> the table's binarizer), so a perfect reconstruction of the target
scores exactly what the target itself scores. Both line maps are thinned to 1-px centre lines, which
makes the scores independent of pen width, and then compared:
- edge F-score (as in BSDS boundary benchmarks): precision = share of output line pixels within
  `tol` px of a sketch line, recall = share of sketch line pixels within `tol` px of an output line;
- symmetric chamfer distance: mean distance (px) from each line pixel to the nearest line of the other.
Pixel L2 on synthetic pairs is the mean squared error in the generator's [-1, 1] range.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from training.make_sketch_pairs import SketchPipeline


@dataclass
class Fidelity:
    precision: float
    recall: float
    f_score: float
    chamfer: float


def skeleton(ink: np.ndarray) -> np.ndarray:
    """Bool ink mask -> bool 1-px centre lines."""
    m = ink.astype(np.uint8) * 255
    return cv2.ximgproc.thinning(m, thinningType=cv2.ximgproc.THINNING_ZHANGSUEN) > 0


def _distance_to(mask: np.ndarray) -> np.ndarray:
    """Euclidean distance of every pixel to the nearest True pixel of mask (inf when mask is empty)."""
    if not mask.any():
        return np.full(mask.shape, np.inf, np.float32)
    return cv2.distanceTransform((~mask).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)


def line_fidelity(pred: np.ndarray, true: np.ndarray, tol: float) -> Fidelity:
    """Compare two bool line maps (already thinned). Empty vs empty is perfect; empty vs lines scores 0
    and a chamfer distance of the image diagonal, the worst possible."""
    assert pred.shape == true.shape and pred.dtype == bool and true.dtype == bool, (pred.shape, true.shape)
    diag = float(np.hypot(*pred.shape))
    if not pred.any() and not true.any():
        return Fidelity(1.0, 1.0, 1.0, 0.0)
    if not pred.any() or not true.any():
        return Fidelity(float(not pred.any()), float(not true.any()), 0.0, diag)
    d_to_true, d_to_pred = _distance_to(true)[pred], _distance_to(pred)[true]
    precision = float((d_to_true <= tol).mean())
    recall = float((d_to_pred <= tol).mean())
    f = 2 * precision * recall / (precision + recall) if precision + recall > 0 else 0.0
    chamfer = 0.5 * (float(d_to_true.mean()) + float(d_to_pred.mean()))
    return Fidelity(precision, recall, f, chamfer)


class SketchFidelity:
    """Scores generated images against the binarized sketches they were made from."""

    def __init__(self, pipeline: SketchPipeline, tol_frac: float = 0.02):
        self.pipeline = pipeline
        self.tol_frac = tol_frac

    def lines_of_images(self, gray: np.ndarray) -> np.ndarray:
        """uint8 grey [B, H, W] -> bool centre lines [B, S, S] at the sketch size."""
        _, _, sketch = self.pipeline(gray)
        return np.stack([skeleton(s < 0.5) for s in sketch])

    def __call__(self, sketches: np.ndarray, gray: np.ndarray) -> list[Fidelity]:
        """sketches float [B, S, S] (paper 1, ink 0); gray uint8 [B, H, W] generated images."""
        assert sketches.ndim == 3 and gray.ndim == 3 and len(sketches) == len(gray), (sketches.shape, gray.shape)
        true = [skeleton(s < 0.5) for s in sketches]
        pred = self.lines_of_images(gray)
        tol = self.tol_frac * sketches.shape[-1]
        return [line_fidelity(p, t, tol) for p, t in zip(pred, true)]


def pixel_l2(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-sample mean squared error [B] between images in [-1, 1]."""
    assert output.shape == target.shape, (output.shape, target.shape)
    return (output.float() - target.float()).pow(2).flatten(1).mean(1)


def summarize(scores: list[Fidelity]) -> dict[str, float]:
    return {k: float(np.mean([getattr(s, k) for s in scores])) for k in ("precision", "recall", "f_score", "chamfer")}
