"""SeFa on a planted dominant affine direction, and the mapping of a StyleGAN2's style affines to W+ layers."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from editing import sefa
from models.stylegan2 import Generator


def test_factorize_recovers_the_planted_dominant_direction():
    rng = np.random.default_rng(0)
    d = 24
    u = rng.normal(size=d)
    u /= np.linalg.norm(u)
    layers = [u + 0.15 * rng.normal(size=(c, d)) for c in (40, 60)]
    dirs, vals = sefa.factorize(layers)
    assert dirs.shape == (d, d) and vals.shape == (d,)
    np.testing.assert_allclose(dirs @ dirs.T, np.eye(d), atol=1e-10)      # orthonormal rows
    assert np.all(np.diff(vals) <= 1e-12)                                 # sorted descending
    assert abs(dirs[0] @ u) > 0.99
    # the eigenvalues are those of A^T A with unit rows: they sum to the number of rows
    assert vals.sum() == pytest.approx(100.0)


def test_rows_are_normalised_so_one_loud_channel_cannot_dominate():
    rng = np.random.default_rng(1)
    d = 16
    u = np.eye(d)[3]
    w = u + 0.2 * rng.normal(size=(50, d))
    w[0] = 1000.0 * np.eye(d)[7]                       # one channel with a huge weight along e_7
    dirs, _ = sefa.factorize([w])
    assert abs(dirs[0] @ u) > 0.95
    raw = np.linalg.eigh(w.T @ w)[1][:, -1]            # without normalisation e_7 would win
    assert abs(raw @ np.eye(d)[7]) > 0.99


def test_factorize_rejects_mismatched_or_empty_input():
    with pytest.raises(ValueError, match="D="):
        sefa.factorize([np.ones((3, 4)), np.ones((3, 5))])
    with pytest.raises(ValueError, match="zero row"):
        sefa.factorize([np.zeros((2, 4))])
    with pytest.raises(ValueError, match="at least one"):
        sefa.factorize([])


def test_style_weights_follow_the_wplus_layer_each_affine_reads():
    torch.manual_seed(0)
    g = Generator(32, style_dim=16, n_mlp=1, channel_max=8, img_channels=1)
    assert sefa.style_layers(g) == list(range(g.num_layers))            # conv1 + 6 convs = W+ 0..6
    assert sefa.style_layers(g, include_torgb=True) == list(range(g.n_latent))
    ws = sefa.style_weights(g, layers=[0, 3])
    expected = [g.conv1.conv.modulation, g.convs[2].conv.modulation]
    for w, mod in zip(ws, expected):
        np.testing.assert_allclose(w, (mod.weight * mod.scale).detach().double().numpy())
    # W+ index 3 with ToRGB: convs[2] and to_rgbs[0] both read it
    assert len(sefa.style_weights(g, layers=[3], include_torgb=True)) == 2
    # the factorised top direction changes layer 0's styles more than any random direction does
    top = sefa.factorize(sefa.style_weights(g, layers=[0]))[0][0]
    a = sefa.style_weights(g, layers=[0])[0]
    a = a / np.linalg.norm(a, axis=1, keepdims=True)
    rand = np.random.default_rng(0).normal(size=(200, 16))
    rand /= np.linalg.norm(rand, axis=1, keepdims=True)
    assert np.linalg.norm(a @ top) >= np.linalg.norm(rand @ a.T, axis=1).max()
    with pytest.raises(ValueError, match="no style affine"):
        sefa.style_weights(g, layers=[g.n_latent - 1])
