"""Fixtures of the table-runtime tests: real QuickDraw drawings, a tiny randomly initialised model."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

# table_helpers.py and table_fakes.py (the labelled test doubles) import by name from the tests
sys.path.insert(0, str(Path(__file__).parent))

from installation.synthetic import quickdraw_strokes  # noqa: E402


@pytest.fixture(scope="session")
def qd_drawings(quickdraw_dir: Path) -> list[tuple[str, list]]:
    """24 real QuickDraw drawings: the first recognised drawing of every 14th category (name order)."""
    files = sorted(quickdraw_dir.glob("*.ndjson"))[::14][:24]
    out = []
    for f in files:
        for line in f.read_text().splitlines():
            d = json.loads(line)
            if d["recognized"]:
                out.append((f.stem, quickdraw_strokes(d["drawing"])))
                break
    assert len(out) == 24
    return out


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> Path:
    """A RANDOMLY INITIALISED model in the project format (not a trained one): a 32 px StyleGAN2 and a
    CompactEncoder, saved with models.save, so the real loader and networks run in the loop."""
    import torch

    import models
    from models.psp import CompactEncoder
    from models.stylegan2 import Generator

    torch.manual_seed(0)
    g = Generator(32, style_dim=32, n_mlp=2, channel_multiplier=1, channel_max=32, img_channels=1)
    e = CompactEncoder("mobilenet_v3_small", n_styles=g.n_latent, input_nc=1, style_dim=32, input_size=128,
                       width=16)
    with torch.no_grad():
        latent_avg = g.mean_latent(256)[0]
    path = tmp_path_factory.mktemp("model") / "tiny_random.pt"
    models.save(path, generator=g, encoder=e, latent_avg=latent_avg, input_size=128,
                meta={"note": "randomly initialised, for tests only"})
    return path
