"""StyleGAN2 trainer: every data kind trains; exact resume; a kill during a save; DDP on one process."""
from __future__ import annotations

import math
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import models
from common.paths import REPO_ROOT
from tests.training.conftest import tiny_config
from training import checkpoint as ckpt_io
from training.losses import d_r1_penalty, g_path_length_penalty
from training.train_stylegan2 import StyleGAN2Trainer

LOSS_KEYS = ("d_loss", "g_loss", "real_score", "fake_score")


def _check_trained(trainer: StyleGAN2Trainer, history: list[dict], channels: int) -> None:
    assert trainer.step == 2 and [h["step"] for h in history] == [1, 2]
    assert all(math.isfinite(h[k]) for h in history for k in LOSS_KEYS)
    assert "r1" in history[0] and "path_penalty" in history[0]  # lazy regularisers ran at step 0
    bundle = models.load(ckpt_io.checkpoint_path(trainer.ckpt_dir, 2), device="cpu")
    assert bundle.generator.img_channels == channels and bundle.generator.size == 32
    torch.testing.assert_close(bundle.generator.state_dict()["conv1.conv.weight"],
                               trainer.G_ema.state_dict()["conv1.conv.weight"])
    assert (trainer.out / "samples" / "00000002.png").is_file()


@pytest.mark.parametrize("kind", ["folder_rgb", "npz", "ndjson"])
def test_each_data_kind_trains_a_32px_generator(kind, tmp_path, image_folder, npz_path, ndjson_dir):
    source, channels = {"folder_rgb": (image_folder, 3), "npz": (npz_path, 1), "ndjson": (ndjson_dir, 1)}[kind]
    trainer = StyleGAN2Trainer(tiny_config(tmp_path / "run", source, channels))
    _check_trained(trainer, trainer.fit(max_steps=2), channels)


def test_shared_quickdraw_trains(tmp_path, quickdraw_dir):
    cfg = tiny_config(tmp_path / "run", quickdraw_dir, data={"source": str(quickdraw_dir), "categories": ["cat"]})
    trainer = StyleGAN2Trainer(cfg)
    _check_trained(trainer, trainer.fit(max_steps=2), 1)


def test_resume_gives_identical_steps_and_losses(tmp_path, ndjson_dir):
    cfg = tiny_config(tmp_path / "run", ndjson_dir)
    straight = StyleGAN2Trainer(cfg)
    history = straight.fit(max_steps=4)  # checkpoints at steps 2 and 4; R1 and path length at steps 0 and 2
    resumed = StyleGAN2Trainer(tiny_config(tmp_path / "other", ndjson_dir))
    resumed.resume(str(ckpt_io.checkpoint_path(straight.ckpt_dir, 2)))
    assert resumed.step == 2
    after = resumed.fit(max_steps=2)
    assert resumed.step == 4 and [h["step"] for h in after] == [3, 4]
    assert after == history[2:]  # bitwise: every loss of the next steps, regularisers included
    for (k, a), b in zip(straight.G_ema.state_dict().items(), resumed.G_ema.state_dict().values()):
        assert torch.equal(a, b), k


def test_resume_refuses_a_different_model(tmp_path, ndjson_dir):
    first = StyleGAN2Trainer(tiny_config(tmp_path / "run", ndjson_dir))
    first.fit(max_steps=2)
    other = StyleGAN2Trainer(tiny_config(tmp_path / "run", ndjson_dir,
                                         model={"size": 32, "style_dim": 16, "n_mlp": 2, "channel_max": 16,
                                                "img_channels": 1}))
    with pytest.raises(ValueError, match="generator config"):
        other.resume("auto")


_CHILD = """
import os, sys, time
from common.config import load_config
from training.train_stylegan2 import StyleGAN2Config, StyleGAN2Trainer
import torch
torch.set_num_threads(1)
trainer = StyleGAN2Trainer(load_config(sys.argv[1], StyleGAN2Config))
trainer.fit(max_steps=2)                      # a good checkpoint at step 2
real_fsync = os.fsync
def slow_disk(fd):                            # the next checkpoint stalls on the disk: the parent kills us here
    if ".ckpt_" in os.readlink(f"/proc/self/fd/{fd}"):
        open(sys.argv[2], "w").close()
        time.sleep(120)
    real_fsync(fd)
os.fsync = slow_disk
trainer.fit(max_steps=2)
"""


def test_kill_during_save_leaves_the_previous_checkpoint(tmp_path, ndjson_dir):
    from common.config import save_config

    cfg = tiny_config(tmp_path / "run", ndjson_dir)
    save_config(tmp_path / "cfg.yaml", cfg)
    marker = tmp_path / "saving"
    (tmp_path / "child.py").write_text(_CHILD)
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT), OMP_NUM_THREADS="1")
    child = subprocess.Popen([sys.executable, str(tmp_path / "child.py"), str(tmp_path / "cfg.yaml"), str(marker)],
                             cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 90
    while not marker.exists():
        assert child.poll() is None, child.stderr.read().decode()[-2000:]
        assert time.monotonic() < deadline, "the child never reached its second save"
        time.sleep(0.1)
    child.send_signal(signal.SIGKILL)
    child.wait()

    ckpt_dir = Path(cfg.out_dir) / "checkpoints"
    assert [p.name for p in ckpt_io.list_checkpoints(ckpt_dir)] == ["ckpt_00000002.pt"]
    assert list(ckpt_dir.glob(".ckpt_*.tmp")), "the interrupted save should have left its temporary file"
    assert models.load(ckpt_dir / "ckpt_00000002.pt", device="cpu").generator.size == 32
    trainer = StyleGAN2Trainer(cfg)
    trainer.resume("auto")
    assert trainer.step == 2 and not list(ckpt_dir.glob(".ckpt_*.tmp"))


def test_ddp_single_process_matches_plain_training(tmp_path, ndjson_dir, monkeypatch):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    plain = StyleGAN2Trainer(tiny_config(tmp_path / "plain", ndjson_dir)).fit(max_steps=2)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    for k, v in dict(WORLD_SIZE="1", RANK="0", LOCAL_RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port)).items():
        monkeypatch.setenv(k, v)
    try:
        trainer = StyleGAN2Trainer(tiny_config(tmp_path / "ddp", ndjson_dir))
        assert isinstance(trainer.G_train, DistributedDataParallel) and trainer.dist.world == 1
        ddp = trainer.fit(max_steps=2)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
    for a, b in zip(plain, ddp):
        for k in LOSS_KEYS:
            assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6), k


def test_r1_penalty_on_a_linear_discriminator():
    a = torch.randn(1, 3, 4, 4)
    x = torch.randn(5, 3, 4, 4, requires_grad=True)
    pred = (x * a).flatten(1).sum(1, keepdim=True)      # grad_x D = a for every sample
    assert d_r1_penalty(pred, x).item() == pytest.approx(a.pow(2).sum().item(), rel=1e-5)


def test_path_length_penalty_of_a_linear_generator():
    # img = c * sum(w) broadcast: ||J^T y|| is the same for all samples, so the penalty vanishes once the
    # running mean equals it, and the mean moves by decay * (length - mean).
    w = torch.randn(6, 3, 8, requires_grad=True)
    img = (2.0 * w.sum(dim=(1, 2))).view(6, 1, 1, 1).expand(6, 1, 16, 16)
    torch.manual_seed(0)
    pen, mean, length = g_path_length_penalty(img, w, torch.tensor(0.0), decay=0.5)
    assert mean.item() == pytest.approx(0.5 * length.item())
    assert pen.item() > 0
