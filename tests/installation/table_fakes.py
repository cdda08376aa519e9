"""TEST DOUBLES (not models): tiny objects that follow the Bundle contract of docs/CONTRACTS.md.

`IdentityBundle` is an autoencoder by construction: encode() writes the sketch's pixels into W+ and
synthesize() reads them back, so the "generated" image *is* the sketch (paper white, ink black). That
plants ground truth for the whole loop: what the projector shows must be the drawing on the table,
warped by the calibration. `RaisingBundle` wraps any bundle and raises inside a time window, the
model fault the table must survive.
"""
from __future__ import annotations

import time

import torch
from torch import nn


class _Generator(nn.Module):
    """Just what the runtime touches: n_latent, style_dim, size, style (the mapping for attract)."""

    def __init__(self, size: int, n_latent: int, style_dim: int):
        super().__init__()
        self.size, self.n_latent, self.style_dim = size, n_latent, style_dim
        self.style = nn.Sequential(nn.Linear(style_dim, style_dim), nn.Tanh())


class IdentityBundle:
    """Sketch [1, 1, S, S] -> W+ holding the pixels (mapped to [-1, 1]) -> the same image back."""

    def __init__(self, size: int = 32, style_dim: int = 256):
        assert (size * size) % style_dim == 0
        self.input_size = self.output_size = size
        self.generator = _Generator(size, size * size // style_dim, style_dim)
        self.encoder = nn.Identity()
        self.latent_avg = torch.zeros(self.generator.n_latent, style_dim)
        self.meta = {"format": "test-double", "path": "<IdentityBundle>"}
        self.device = torch.device("cpu")
        self.calls = 0

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        s = self.input_size
        assert x.shape[1:] == (1, s, s), x.shape
        self.calls += 1
        return (x * 2 - 1).reshape(x.shape[0], self.generator.n_latent, self.generator.style_dim)

    def synthesize(self, w: torch.Tensor) -> torch.Tensor:
        assert w.shape[1:] == (self.generator.n_latent, self.generator.style_dim), w.shape
        return w.reshape(w.shape[0], 1, self.output_size, self.output_size)

    def sketch_to_image(self, x: torch.Tensor) -> torch.Tensor:
        return self.synthesize(self.encode(x))


class RaisingBundle:
    """Delegates to `inner` but raises RuntimeError while `fail_from <= now < fail_until`
    (monotonic seconds), like a CUDA error or a corrupted weight tensor would."""

    def __init__(self, inner, fail_from: float, fail_until: float):
        self.inner, self.fail_from, self.fail_until = inner, fail_from, fail_until
        self.raised = 0

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def encode(self, x):
        if self.fail_from <= time.monotonic() < self.fail_until:
            self.raised += 1
            raise RuntimeError("injected model fault (test double)")
        return self.inner.encode(x)
