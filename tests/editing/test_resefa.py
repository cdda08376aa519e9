"""Region-based directions: forward-mode Jacobians and a planted region-local direction."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from editing import resefa

H = W = 8
D = 12


def planted_map(seed=0):
    """A (H*W, D) linear map whose direction v moves only the top-left 4x4 block (and moves it a lot)."""
    rng = np.random.default_rng(seed)
    mask = resefa.region_mask(H, W, rect=(0, 0, 0.5, 0.5))
    v = rng.normal(size=D)
    v /= np.linalg.norm(v)
    j = rng.normal(size=(H * W, D))
    bg = ~mask.reshape(-1)
    j[bg] = j[bg] - np.outer(j[bg] @ v, v)           # background pixels do not see v
    return torch.tensor(j, dtype=torch.float32), mask, v


def image_fn(j, nonlinear):
    def fn(w):
        out = w @ j.T
        if nonlinear:
            out = torch.tanh(0.3 * out)
        return out.reshape(-1, 1, H, W)
    return fn


def test_region_mask_rect_and_resized_mask():
    m = resefa.region_mask(8, 8, rect=(0.25, 0.5, 0.75, 1.0))
    assert m.sum() == 16 and m[4:, 2:6].all()
    big = np.zeros((16, 16), dtype=np.uint8)
    big[:8] = 255
    assert (resefa.region_mask(8, 8, mask=big) == (np.arange(8) < 4)[:, None]).all()
    with pytest.raises(ValueError, match="exactly one"):
        resefa.region_mask(8, 8)
    with pytest.raises(ValueError, match="some pixels"):
        resefa.region_mask(8, 8, rect=(0, 0, 1, 1))


def test_forward_jacobian_matches_reverse_mode():
    j, _, _ = planted_map()
    fn = image_fn(j, nonlinear=True)
    w = torch.randn(D)
    ours = resefa.jacobian(fn, w, chunk=5)
    ref = torch.autograd.functional.jacobian(lambda x: fn(x.unsqueeze(0))[0], w)
    assert ours.shape == (1, H, W, D)
    torch.testing.assert_close(ours, ref, atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("nonlinear", [False, True])
def test_recovers_the_planted_region_local_direction(nonlinear):
    j, mask, v = planted_map()
    latents = np.random.default_rng(1).normal(size=(4, D))
    dirs, ratios = resefa.find_directions(image_fn(j, nonlinear), latents, mask, reg=1e-6, progress=False)
    assert dirs.shape == (D, D)
    np.testing.assert_allclose(np.linalg.norm(dirs, axis=1), 1.0, atol=1e-9)
    assert abs(dirs[0] @ v) > 0.999
    assert ratios[0] > 100 * ratios[1]                 # the planted one is far ahead of the rest
    assert np.all(np.diff(ratios) <= 0)


def test_factorize_is_the_generalised_eigenproblem():
    rng = np.random.default_rng(2)
    a = rng.normal(size=(6, 6))
    b = rng.normal(size=(9, 6))
    af, ab = a.T @ a, b.T @ b
    dirs, vals = resefa.factorize(af, ab, reg=1e-3)
    eps = 1e-3 * np.trace(ab) / 6
    for v, lam in zip(dirs, vals):
        np.testing.assert_allclose(af @ v, lam * (ab + eps * np.eye(6)) @ v, atol=1e-8 * np.abs(af).max())
    with pytest.raises(ValueError, match="reg"):
        resefa.factorize(af, ab, reg=0)
