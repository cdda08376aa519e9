"""Simo-Serra et al.'s sketch simplification network ("Learning to Simplify", SIGGRAPH 2016;
"Mastering Sketching", TOG 2018) in the key layout of the released PyTorch models
(bobbens/sketch_simplification PR #12: model_gan.pth, model_mse.pth, model_pencil{1,2}.pth).

A fully convolutional encoder-decoder at 1/8 resolution: 20 Conv2d and 3 ConvTranspose2d, each
followed by a ReLU except the last, which ends in a Sigmoid. pSp uses it to turn pencil-filtered
photos into clean line drawings. Licence note: the released weights are non-commercial
(Waseda University / CC BY-NC); this file only describes the layer layout.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

# (kind, in, out, kernel, stride, padding); 'c' = Conv2d, 't' = ConvTranspose2d (x2 upsample).
_LAYERS = (
    ("c", 1, 48, 5, 2, 2),
    ("c", 48, 128, 3, 1, 1),
    ("c", 128, 128, 3, 1, 1),
    ("c", 128, 128, 3, 2, 1),
    ("c", 128, 256, 3, 1, 1),
    ("c", 256, 256, 3, 1, 1),
    ("c", 256, 256, 3, 2, 1),
    ("c", 256, 512, 3, 1, 1),
    ("c", 512, 1024, 3, 1, 1),
    ("c", 1024, 1024, 3, 1, 1),
    ("c", 1024, 1024, 3, 1, 1),
    ("c", 1024, 1024, 3, 1, 1),
    ("c", 1024, 512, 3, 1, 1),
    ("c", 512, 256, 3, 1, 1),
    ("t", 256, 256, 4, 2, 1),
    ("c", 256, 256, 3, 1, 1),
    ("c", 256, 128, 3, 1, 1),
    ("t", 128, 128, 4, 2, 1),
    ("c", 128, 128, 3, 1, 1),
    ("c", 128, 48, 3, 1, 1),
    ("t", 48, 48, 4, 2, 1),
    ("c", 48, 24, 3, 1, 1),
    ("c", 24, 1, 3, 1, 1),
)


class SketchSimplifier(nn.Sequential):
    """Rough sketch [B, 1, H, W] in [0, 1] -> clean lines in [0, 1]; keys '0.weight' ... '44.bias'."""

    # (immean, imstd) the released models were trained with, from their model_*.py files.
    NORMALISATION = {
        "model_gan": (0.9664114577640158, 0.0858381272736797),
        "model_mse": (0.9664423107454593, 0.08583666033640507),
        "model_pencil1": (0.9817833515894078, 0.0925009022585048),
        "model_pencil2": (0.9851298627337799, 0.07418377454883571),
    }
    MULTIPLE = 8  # three stride-2 stages: H and W must be multiples of 8 to come back the same size

    def __init__(self, variant: str = "model_gan"):
        if variant not in self.NORMALISATION:
            raise ValueError(f"variant must be one of {sorted(self.NORMALISATION)}, got {variant!r}")
        layers: list[nn.Module] = []
        for kind, c_in, c_out, k, s, p in _LAYERS:
            conv = nn.Conv2d if kind == "c" else nn.ConvTranspose2d
            layers += [conv(c_in, c_out, k, s, p), nn.ReLU()]
        layers[-1] = nn.Sigmoid()
        super().__init__(*layers)
        self.config = dict(variant=variant)
        self.immean, self.imstd = self.NORMALISATION[variant]

    def simplify(self, x: torch.Tensor, crop: bool = True) -> torch.Tensor:
        """x [B, 1, H, W] in [0, 1] (paper 1) -> simplified lines [B, 1, H, W] (or padded size if crop=False).

        Normalises, then replicate-pads right/bottom to a multiple of 8 (after normalising, as the
        reference simplify.py), runs the network and crops the padding away.
        """
        if x.dim() != 4 or x.shape[1] != 1:
            raise ValueError(f"SketchSimplifier.simplify expects [B, 1, H, W], got {list(x.shape)}")
        h, w = x.shape[-2:]
        ph, pw = -h % self.MULTIPLE, -w % self.MULTIPLE
        x = (x - self.immean) / self.imstd
        if ph or pw:
            x = F.pad(x, (0, pw, 0, ph), mode="replicate")
        y = self(x)
        return y[..., :h, :w] if crop else y
