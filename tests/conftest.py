"""Test-wide settings: CPU only, seeded, offline; helpers to find ../shared or skip clearly."""
from __future__ import annotations

import os
import random
import sys
from pathlib import Path

import numpy as np
import pytest

os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
os.environ.setdefault("SDL_AUDIODRIVER", "dummy")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from common.paths import shared_dir  # noqa: E402


@pytest.fixture(autouse=True)
def _seed_everything():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a whole module (its module-scoped fixtures included): tiny networks run
    thousands of small ops, where a second thread only adds waiting on a shared machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def shared() -> Path:
    """The ../shared folder; tests that need it skip with the reason when it is absent."""
    p = shared_dir()
    if p is None:
        pytest.skip("../shared is absent (reference fixtures and data are not redistributed with the repo)")
    return p


@pytest.fixture(scope="session")
def fixtures_dir(shared: Path) -> Path:
    p = shared / "fixtures"
    if not (p / "fill.py").is_file():
        pytest.skip(f"{p}/fill.py is absent: reference fixtures not available")
    if str(p) not in sys.path:
        sys.path.insert(0, str(p))
    return p


@pytest.fixture(scope="session")
def quickdraw_dir(shared: Path) -> Path:
    p = shared / "data" / "quickdraw"
    if not any(p.glob("*.ndjson")):
        pytest.skip(f"{p} has no QuickDraw .ndjson files")
    return p
