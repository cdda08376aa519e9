"""Shared fixtures for the editing tests: the generator the end-to-end tests edit.

`default_generator_path` is the shipped default model (weights/default.pt) when it is present; until
then a tiny randomly initialised StyleGAN2 saved with models.save stands in. The test ids say which
one ran ([shipped-default] or [tiny-random-fallback]), so a report never mistakes one for the other.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import models
from common.paths import REPO_ROOT
from models.stylegan2 import Generator

DEFAULT_WEIGHTS = REPO_ROOT / "weights" / "default.pt"
_WHICH = "shipped-default" if DEFAULT_WEIGHTS.is_file() else "tiny-random-fallback"


def save_tiny_generator(path: Path, seed: int = 0, size: int = 32, style_dim: int = 64) -> Path:
    """A small random-init grayscale StyleGAN2 in the project format (test stand-in, not a trained model)."""
    torch.manual_seed(seed)
    g = Generator(size, style_dim=style_dim, n_mlp=2, channel_max=32, img_channels=1).eval()
    with torch.no_grad():
        lat = g.mean_latent(2048)[0]
    return models.save(path, generator=g, latent_avg=lat, meta={"note": "random init, editing tests only"})


@pytest.fixture(scope="session")
def tiny_generator_path(tmp_path_factory) -> Path:
    return save_tiny_generator(tmp_path_factory.mktemp("tiny_g") / "tiny_g.pt")


@pytest.fixture(scope="session", params=[_WHICH])
def default_generator_path(request, tmp_path_factory) -> Path:
    if request.param == "shipped-default":
        return DEFAULT_WEIGHTS
    return save_tiny_generator(tmp_path_factory.mktemp("fallback_g") / "fallback_g.pt")


@pytest.fixture(autouse=True)
def _one_torch_thread():
    """Small CPU ops run far faster on one thread when other jobs share the two cores (no OpenMP
    spin contention); restored afterwards so other folders' tests keep their setting."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)
