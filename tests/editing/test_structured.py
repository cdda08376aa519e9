"""Building a structured latent set for the tensor models: the image transforms, encoder embedding and inversion."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import models
from editing import attributes
from editing.invert import invert
from editing.sampling import load_generator, sample_latents, synthesize, to_wplus
from editing.structured import TRANSFORMS, drawing_transform_tensor, transform
from models.psp import CompactEncoder
from models.stylegan2 import Generator


def square(size=32):
    img = torch.ones(1, 1, size, size)
    img[..., 10:20, 10] = img[..., 10:20, 19] = -1
    img[..., 10, 10:20] = img[..., 19, 10:20] = -1
    return img


def test_transforms_do_what_their_names_say():
    img = square()
    for name in TRANSFORMS:
        torch.testing.assert_close(transform(img, name, 0.0), img, atol=1e-5, rtol=0)
    assert attributes.ink_coverage(transform(img, "thicker", 1.0)) > 1.5 * attributes.ink_coverage(img)
    assert attributes.centroid_x(transform(img, "shift_right", 1.0)) > attributes.centroid_x(img) + 0.08
    assert attributes.spread(transform(img, "smaller", 1.0)) < 0.8 * attributes.spread(img)
    with pytest.raises(ValueError, match="unknown transform"):
        transform(img, "wobble", 0.5)


def test_inversion_finds_a_code_closer_to_the_target(tiny_generator_path):
    bundle = load_generator(tiny_generator_path)
    _, w = sample_latents(bundle, 4, seed=3, progress=False)
    target = synthesize(bundle, w[:2])
    codes, mse = invert(bundle, target, w[2:], steps=40, lr=0.05, progress=False)
    start_mse = ((synthesize(bundle, w[2:]) - target) ** 2).mean((1, 2, 3)).numpy()
    assert codes.shape == (2, bundle.n_latent, bundle.style_dim)
    assert np.all(mse < 0.5 * start_mse), (mse, start_mse)


def test_structured_set_by_inversion_keeps_level_zero(tiny_generator_path):
    bundle = load_generator(tiny_generator_path)
    lat, modes = drawing_transform_tensor(bundle, n_persons=2, levels=1, steps=3, seed=0)
    assert modes == ["person", "expression", "intensity"]
    assert lat.shape == (2, len(TRANSFORMS), 2, bundle.n_latent, bundle.style_dim)
    _, w = sample_latents(bundle, 2, seed=0, truncation=0.7, progress=False)
    np.testing.assert_allclose(lat[:, :, 0], np.broadcast_to(to_wplus(bundle, w)[:, None], lat[:, :, 0].shape))


def test_structured_set_from_sketches_uses_the_encoder(tmp_path):
    torch.manual_seed(0)
    g = Generator(32, style_dim=32, n_mlp=1, channel_max=16, img_channels=1).eval()
    e = CompactEncoder(backbone="resnet18", n_styles=g.n_latent, input_nc=1, style_dim=32, input_size=128).eval()
    path = models.save(tmp_path / "psp.pt", generator=g, encoder=e, latent_avg=torch.randn(g.n_latent, 32),
                       input_size=128)
    bundle = load_generator(path)
    sketches = (square(128) + 1) / 2
    sketches = torch.cat([sketches, sketches.flip(-1)])
    lat, _ = drawing_transform_tensor(bundle, levels=2, sketches=sketches)
    assert lat.shape == (2, len(TRANSFORMS), 3, g.n_latent, 32)
    with torch.no_grad():
        base = bundle.encode(sketches).numpy()
        thick = bundle.encode((transform(sketches * 2 - 1, "thicker", 1.0) + 1) / 2).numpy()
    np.testing.assert_allclose(lat[:, 1, 0], base, atol=1e-5)
    np.testing.assert_allclose(lat[:, TRANSFORMS.index("thicker"), 2], thick, atol=1e-5)
