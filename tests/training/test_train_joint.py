"""training.train_joint: the CPU route to the default model trains, saves a loadable bundle and resumes."""
from __future__ import annotations

import json

import torch

import models
from models.stylegan2 import Generator
from training import train_joint


def _ndjson(path, n=6):
    rows = []
    for i in range(n):
        xs = [10 + 20 * i % 200, 200, 120, 10 + 20 * i % 200]
        ys = [20, 30 + 10 * i, 220, 20]
        rows.append(json.dumps({"word": "tri", "drawing": [[xs, ys]]}))
    path.write_text("\n".join(rows) + "\n")
    return path


def test_joint_training_saves_a_loadable_bundle_and_resumes(tmp_path):
    torch.manual_seed(0)
    g = Generator(32, style_dim=32, n_mlp=2, channel_max=32, img_channels=1)
    with torch.no_grad():
        lat = g.mean_latent(256)[0]
    gpath = models.save(tmp_path / "g.pt", generator=g, latent_avg=lat)
    data = _ndjson(tmp_path / "tri.ndjson")
    out = tmp_path / "run"
    args = ["--generator", str(gpath), "--data", str(data), "--out", str(out), "--batch", "4",
            "--holdout", "0", "--max-steps", "3", "--minutes", "5"]
    assert train_joint.main(args) == 0
    b = models.load(out / "model.pt", device="cpu")
    assert b.meta["steps"] == 3 and b.input_size == 128 and b.encoder is not None
    assert b.sketch_to_image(torch.ones(1, 1, 128, 128)).shape == (1, 1, 32, 32)
    assert list(out.glob("val_*.png"))
    # resume continues from the saved step instead of starting over
    assert train_joint.main(args[:-4] + ["--max-steps", "5", "--minutes", "5"]) == 0
    assert torch.load(out / "state.pt", weights_only=True)["step"] == 5


def test_pairs_share_strokes_and_follow_the_binarizer_polarity(tmp_path):
    from training.data import QuickDrawDataset

    ds = train_joint.SketchDrawingPairs(QuickDrawDataset(_ndjson(tmp_path / "t.ndjson"), 32, 1), 128)
    sketch, target = ds[(0, 0)]
    assert sketch.shape == (1, 128, 128) and target.shape == (1, 32, 32)
    assert sketch.min() == 0 and sketch.max() == 1 and sketch.mean() > 0.8     # paper = 1, sparse ink = 0
    # the ink of the sketch (downsampled) lies where the target drawing is dark
    small = torch.nn.functional.avg_pool2d(sketch[None], 4)[0]
    ink_s, ink_t = small < 0.9, target < 0.5
    assert (ink_s & ink_t).sum() / ink_t.sum().clamp_min(1) > 0.5


def test_growing_starts_from_the_old_models_picture_exactly(tmp_path):
    """--size / --init-encoder: the grown pair's first answer is the old one, upsampled by the skip path."""
    from models.psp import CompactEncoder

    torch.manual_seed(1)
    g = Generator(32, style_dim=32, n_mlp=2, channel_max=32, img_channels=1).eval()
    e = CompactEncoder("resnet18", n_styles=g.n_latent, input_nc=1, style_dim=32, input_size=128, width=32).eval()
    with torch.no_grad():       # non-zero heads, so that a wrong row copy would show
        for p in e.parameters():
            p.add_(0.05 * torch.randn_like(p))
    lat = torch.randn(32)
    big = train_joint.grow_generator(g, 64).eval()
    e2 = CompactEncoder("resnet18", n_styles=big.n_latent, input_nc=1, style_dim=32, input_size=128,
                        width=32).eval()
    assert train_joint.init_encoder(e2, e.state_dict()) == []
    assert big.size == 64 and big.n_latent == g.n_latent + 2
    x = (torch.rand(2, 1, 128, 128) > 0.2).float()
    with torch.no_grad():
        small, _ = g([e(x) + lat], input_is_latent=True, randomize_noise=False)
        grown, _ = big([e2(x) + lat], input_is_latent=True, randomize_noise=False)
        torch.testing.assert_close(grown, big.to_rgbs[-1].upsample(small), rtol=0, atol=1e-6)
    assert grown.shape == (2, 1, 64, 64) and grown.std() > 0.01
    # only the new block is new; every shared tensor was copied
    for k, v in g.state_dict().items():
        assert torch.equal(big.state_dict()[k], v), k
