"""Landmark detectors psi for the NRSfM method: images [B, C, H, W] in [-1, 1] -> (B, 2, L) pixel coordinates.

- MediaPipeLandmarks: Google's FaceLandmarker (478 face landmarks) from a `.task` file, for face
  generators. mediapipe is optional (it needs numpy < 2, which this project does not pin), so it is
  imported only when a detector is built.
- InkHullLandmarks: a deterministic, smooth shape descriptor for drawings (no faces there): the soft
  extreme point of the ink in L fixed directions around the ink centroid.
Rows without a detection are NaN.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

__all__ = ["mediapipe_available", "MediaPipeLandmarks", "InkHullLandmarks", "to_uint8_hwc"]


def mediapipe_available() -> bool:
    return importlib.util.find_spec("mediapipe") is not None


def to_uint8_hwc(images: torch.Tensor) -> np.ndarray:
    """[B, C, H, W] in [-1, 1] -> uint8 [B, H, W, 3] RGB (grey replicated)."""
    if images.ndim != 4 or images.shape[1] not in (1, 3):
        raise ValueError(f"images must be [B, 1 or 3, H, W], got {tuple(images.shape)}")
    x = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    x = x.expand(-1, 3, -1, -1) if x.shape[1] == 1 else x
    return np.ascontiguousarray(x.permute(0, 2, 3, 1).numpy())


class MediaPipeLandmarks:
    """MediaPipe FaceLandmarker (v2) on generated faces; 478 landmarks in pixels, NaN without a face."""

    n_landmarks = 478

    def __init__(self, task_path: str | Path):
        task_path = Path(task_path)
        if not task_path.is_file():
            raise FileNotFoundError(f"{task_path}: MediaPipe FaceLandmarker .task file not found")
        if not mediapipe_available():
            raise ImportError("the MediaPipe landmark detector needs the 'mediapipe' package (pip install "
                              "mediapipe; it requires numpy<2, so use a separate environment); or pass another "
                              "psi callable, e.g. editing.landmarks.InkHullLandmarks for drawings")
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision

        self._mp = mp
        options = vision.FaceLandmarkerOptions(base_options=BaseOptions(model_asset_path=str(task_path)),
                                               num_faces=1)
        self._detector = vision.FaceLandmarker.create_from_options(options)

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        rgb = to_uint8_hwc(images)
        out = np.full((len(rgb), 2, self.n_landmarks), np.nan)
        for i, img in enumerate(rgb):
            res = self._detector.detect(self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=img))
            if res.face_landmarks:
                pts = res.face_landmarks[0]
                out[i, 0] = [p.x * img.shape[1] for p in pts]
                out[i, 1] = [p.y * img.shape[0] for p in pts]
        return out


class InkHullLandmarks:
    """Soft extreme points of the ink of a drawing (paper bright, ink dark) in n fixed directions.

    Ink weight m = max((1 - x) / 2 - floor, 0) / (1 - floor) (x in [-1, 1]; the floor drops faint grey,
    which the exponential weights would otherwise amplify far from the drawing); with c the ink centroid
    and r its rms radius, landmark j is the m * exp(beta <p - c, u_j> / r)-weighted mean of pixel positions
    p, u_j = (cos, sin)(2 pi j / n). Large beta approaches the hull's extreme point; the weights keep it a
    continuous function of the image.
    """

    def __init__(self, n_landmarks: int = 16, beta: float = 4.0, floor: float = 0.2, min_ink: float = 1e-3):
        if n_landmarks < 3:
            raise ValueError(f"n_landmarks must be >= 3, got {n_landmarks}")
        if not 0 <= floor < 1:
            raise ValueError(f"floor must be in [0, 1), got {floor}")
        self.n_landmarks = n_landmarks
        self.beta = beta
        self.floor = floor
        self.min_ink = min_ink

    def __call__(self, images: torch.Tensor) -> np.ndarray:
        if images.ndim != 4:
            raise ValueError(f"images must be [B, C, H, W], got {tuple(images.shape)}")
        x = images.detach().double().cpu().mean(1)                         # [B, H, W]
        m = (((1 - x.clamp(-1, 1)) / 2 - self.floor).clamp_min(0) / (1 - self.floor)).flatten(1)
        h, w = x.shape[1:]
        yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                                indexing="ij")
        p = torch.stack([xx.flatten(), yy.flatten()], 1)                     # [P, 2]
        mass = m.sum(1, keepdim=True)
        c = (m @ p) / mass.clamp_min(1e-12)                                  # [B, 2]
        d = p[None] - c[:, None]                                             # [B, P, 2]
        r = torch.sqrt((m * (d ** 2).sum(-1)).sum(1) / mass[:, 0].clamp_min(1e-12)).clamp_min(1.0)
        ang = torch.arange(self.n_landmarks, dtype=torch.float64) * (2 * np.pi / self.n_landmarks)
        u = torch.stack([torch.cos(ang), torch.sin(ang)], 1)                 # [L, 2]
        logits = self.beta * (d @ u.T) / r[:, None, None]                    # [B, P, L]
        logits = logits - logits.amax(1, keepdim=True)
        wts = m[:, :, None] * torch.exp(logits)
        pts = torch.einsum("bpl,pk->bkl", wts, p) / wts.sum(1)[:, None].clamp_min(1e-300)
        out = pts.numpy()
        out[(mass[:, 0] / m.shape[1] < self.min_ink).numpy()] = np.nan
        return out
