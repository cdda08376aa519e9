"""Training throughput: images per second of each trainer's own training step, per size and fast path.

What one step is (always the trainer's own code, never a copy of it):
  stylegan2  training.train_stylegan2.StyleGAN2Trainer.train_step: D step, G step, lazy R1 / path-length
             regularisation on the trainer's schedule, EMA update. Settings from the preset
             configs/train_default.yaml (the shipped 64 px grayscale network), size and batch replaced.
  psp        training.train_psp.PSPTrainer.train_step: encoder forward, frozen generator, losses, backward,
             Adam. Settings from configs/train_psp_default.yaml (ResNet-18 CompactEncoder, LPIPS off as
             there); its generator has the stylegan2 preset's architecture at the benchmarked size.
  joint      training.train_joint.train_step on the pair train_joint.build_pair builds (encoder forward +
             generator forward + loss_fn + backward + Adam on both), with train_joint's default arguments.
Data loading is left out: the batch is synthetic and already in memory (StyleGAN2 reals go through the
trainer's own to_tensor; pSp pairs through PSPTrainer.batch), so the figures are the step's compute.

Paths, all measured in the same run so the speed-ups compare like with like:
  eager            fp32 as the trainers run today (the Discriminator already feeds its convs NHWC)
  channels_last    4-D parameters and buffers of every trained network in channels_last (NHWC)
  amp              CUDA only, StyleGAN2 only: the trainer's own mixed precision (cfg.amp: torch.autocast
                   fp16 + GradScaler); train_psp and train_joint have no AMP option, so they get no amp row
  amp+channels_last  both
train_joint runs on the CPU only (its main loads everything to cpu), so it is skipped on CUDA.

StyleGAN2's lazy regularisation makes steps unequal: R1 runs every d_reg_every steps, path length every
g_reg_every. Each kind of step is timed separately by setting the trainer's step counter, and
`amortized ms` weights them by how often the schedule runs them; images/s = batch / amortized time.
`median ms` is the median of the most common kind of step (the plain one). For pSp and joint every step
is the same and both columns agree.

    .venv/bin/python bench/bench_training.py                  # all trainers, 64 + 128 px: a few min on 2 cores
    .venv/bin/python bench/bench_training.py --write-results  # ... and replace its section in bench/RESULTS.md
    .venv/bin/python bench/bench_training.py --trainers joint --sizes 32 --warmup 1 --steps 1 --threads 1
"""
from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from loguru import logger
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_models import machine  # noqa: E402
from results_md import write_section  # noqa: E402
from common.config import from_dict, to_dict  # noqa: E402
from common.logging import setup_logging  # noqa: E402
from training.cli import load_with_overrides  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Training (bench/bench_training.py)"
TRAINERS = ("stylegan2", "psp", "joint")
PATHS = ("eager", "channels_last", "amp", "amp+channels_last")
SG2_PRESET = ROOT / "configs" / "train_default.yaml"
PSP_PRESET = ROOT / "configs" / "train_psp_default.yaml"
ROW_KEYS = ("trainer", "size", "batch", "device", "path", "ms_median", "ms_amortized", "images_per_s",
            "speedup", "steps")


@dataclass(frozen=True)
class Case:
    trainer: str
    size: int
    batch: int | None       # None: the trainer's preset batch
    device: str
    path: str


@dataclass
class StepKind:
    name: str
    freq: float                     # share of the trainer's steps that are of this kind
    run: Callable[[], None]         # one training step of this kind


def applicable_paths(trainer: str, device: torch.device, wanted: list[str]) -> list[str]:
    out = []
    for p in wanted:
        if p.startswith("amp") and (device.type != "cuda" or trainer != "stylegan2"):
            continue
        out.append(p)
    return out


def channels_last(*nets: torch.nn.Module) -> None:
    """4-D parameters and buffers to NHWC in place, the rule of models.Bundle.optimize (the modulated
    convolutions' 5-D weights have no such layout, which is why Module.to(memory_format=...) refuses
    StyleGAN2). The Parameter objects stay the same, so optimisers that already hold them go on working;
    their state is created on the first step."""
    for n in nets:
        for t in list(n.parameters()) + list(n.buffers()):
            if t.dim() == 4:
                t.data = t.data.contiguous(memory_format=torch.channels_last)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _sg2_config(size: int, batch: int | None, device: str, path: str, threads: int, seed: int,
                source: Path, out_dir: Path):
    """configs/train_default.yaml with the benchmark's size, batch, device, data and mixed precision."""
    from training.train_stylegan2 import StyleGAN2Config

    data = to_dict(load_with_overrides(SG2_PRESET, StyleGAN2Config, [f"data.source={source}"]))
    data["model"]["size"] = size
    data.update(out_dir=str(out_dir), device=device, threads=threads, seed=seed, amp=path.startswith("amp"),
                batch=batch or data["batch"], num_workers=0)
    return from_dict(StyleGAN2Config, data, f"{SG2_PRESET} (bench)")


def _sg2_generator(size: int, seed: int):
    """The stylegan2 preset's generator architecture at `size`, with its average W."""
    from training.train_stylegan2 import ModelConfig, StyleGAN2Config
    from models.stylegan2 import Generator

    m: ModelConfig = load_with_overrides(SG2_PRESET, StyleGAN2Config, []).model
    torch.manual_seed(seed)
    g = Generator(size, m.style_dim, m.n_mlp, m.channel_multiplier, lr_mlp=m.lr_mlp, channel_max=m.channel_max,
                  img_channels=m.img_channels)
    with torch.no_grad():
        lat = g.mean_latent(256)[0]
    return g, lat


def setup_stylegan2(case: Case, work: Path, threads: int, seed: int) -> tuple[list[StepKind], int]:
    from training.data import to_tensor
    from training.train_stylegan2 import Dist, StyleGAN2Trainer

    rng = np.random.default_rng(seed)
    npz = work / "reals.npz"   # the constructor builds its dataset from it; the step gets the batch below
    cfg = _sg2_config(case.size, case.batch, case.device, case.path, threads, seed, npz, work)
    batch, ch = cfg.batch, cfg.model.img_channels
    np.savez(npz, images=rng.integers(0, 256, (batch, case.size, case.size), dtype=np.uint8))
    trainer = StyleGAN2Trainer(cfg, Dist())
    imgs = rng.integers(0, 256, (batch, case.size, case.size, ch), dtype=np.uint8)
    real = to_tensor(imgs).to(trainer.device)          # the trainer's own uint8 -> [-1, 1] mapping
    if "channels_last" in case.path:
        channels_last(trainer.G, trainer.D, trainer.G_ema)

    def kind(s: int) -> tuple[bool, bool]:
        return (cfg.r1_gamma > 0 and s % cfg.d_reg_every == 0, cfg.path_reg > 0 and s % cfg.g_reg_every == 0)

    period = math.lcm(cfg.d_reg_every, cfg.g_reg_every)
    counts = Counter(kind(s) for s in range(period))
    first = {k: next(s for s in range(1, period + 1) if kind(s) == k) for k in counts}
    names = {(False, False): "plain", (True, False): "r1", (False, True): "path", (True, True): "r1+path"}

    def runner(counter: int) -> Callable[[], None]:
        def run():
            trainer.step = counter      # which lazy regularisers run follows from the step counter
            trainer.train_step(real)
        return run

    kinds = [StepKind(names[k], counts[k] / period, runner(first[k])) for k in counts]
    return kinds, batch


def setup_psp(case: Case, work: Path, threads: int, seed: int) -> tuple[list[StepKind], int]:
    import models
    from training.train_psp import PSPConfig, PSPTrainer

    g, lat = _sg2_generator(case.size, seed)
    models.save(work / "g.pt", generator=g, latent_avg=lat)
    preset = load_with_overrides(PSP_PRESET, PSPConfig, [f"generator={work / 'g.pt'}", f"pairs={work}"])
    batch = case.batch or preset.batch
    n, sk = batch + 1, preset.pipeline.sketch_size
    rng = np.random.default_rng(seed)
    (work / "pairs").mkdir()
    np.savez(work / "pairs" / "pairs_00000.npz",
             sketch=np.where(rng.random((n, sk, sk)) < 0.05, 0, 255).astype(np.uint8),
             image=rng.integers(0, 256, (n, case.size, case.size, g.img_channels), dtype=np.uint8),
             wplus=rng.standard_normal((n, g.n_latent, g.style_dim)).astype(np.float32))
    data = to_dict(preset)
    data.update(pairs=str(work / "pairs"), out_dir=str(work / "run"), batch=batch, n_val=1, device=case.device,
                threads=threads, seed=seed)
    torch.manual_seed(seed)
    trainer = PSPTrainer(from_dict(PSPConfig, data, f"{PSP_PRESET} (bench)"))
    if "channels_last" in case.path:
        channels_last(trainer.net.encoder, trainer.net.decoder)
    idx = np.arange(batch)
    return [StepKind("plain", 1.0, lambda: trainer.train_step(idx))], batch


def setup_joint(case: Case, work: Path, threads: int, seed: int) -> tuple[list[StepKind], int]:
    from training import train_joint

    a = train_joint.build_parser().parse_args(["--generator", "-", "--data", "-", "--out", str(work)])
    batch = case.batch or a.batch
    base, lat = _sg2_generator(case.size, seed)
    torch.manual_seed(seed)
    g, e, latent_avg = train_joint.build_pair(base, lat, case.size, a.backbone, a.sketch_size, a.width)
    opt = train_joint.make_optimizer(e, g, a.lr, a.g_lr)
    if "channels_last" in case.path:
        channels_last(e, g)
    gen = torch.Generator().manual_seed(seed)
    x = (torch.rand(batch, 1, a.sketch_size, a.sketch_size, generator=gen) > 0.05).float()  # paper 1, ink 0
    y = torch.where(torch.rand(batch, 1, case.size, case.size, generator=gen) < 0.1, -1.0, 1.0)

    def run():
        train_joint.train_step(e, g, latent_avg, opt, x, y, a.reg, a.ink_weight)

    return [StepKind("plain", 1.0, run)], batch


SETUP = {"stylegan2": setup_stylegan2, "psp": setup_psp, "joint": setup_joint}


def measure(kinds: list[StepKind], warmup: int, steps: int, device: torch.device) -> dict:
    """Warm-up runs every kind once (the rare ones first, so their code paths are warm too) and then the
    most common kind; measured: `steps` of the most common kind and max(1, round(steps * freq)) of each
    other kind."""
    kinds = sorted(kinds, key=lambda k: k.freq)
    common = kinds[-1]
    for k in kinds[:-1]:
        k.run()
    for _ in range(max(1, warmup)):
        common.run()
    times: dict[str, list[float]] = {}
    for k in kinds:
        n = steps if k is common else max(1, round(steps * k.freq))
        for _ in range(n):
            _sync(device)
            t0 = time.perf_counter()
            k.run()
            _sync(device)
            times.setdefault(k.name, []).append((time.perf_counter() - t0) * 1e3)
    amortized = sum(k.freq * statistics.median(times[k.name]) for k in kinds)
    return dict(ms_median=statistics.median(times[common.name]), ms_amortized=amortized,
                steps=sum(len(v) for v in times.values()),
                kinds={k.name: (k.freq, statistics.median(times[k.name])) for k in kinds})


def run_case(case: Case, warmup: int, steps: int, threads: int, seed: int) -> dict:
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    with tempfile.TemporaryDirectory(prefix="bench_training_") as tmp:
        kinds, batch = SETUP[case.trainer](case, Path(tmp), threads, seed)
        torch.set_num_threads(threads)
        m = measure(kinds, warmup, steps, torch.device(case.device))
    row = dict(trainer=case.trainer, size=case.size, batch=batch, device=case.device, path=case.path, **m)
    row["images_per_s"] = batch * 1e3 / row["ms_amortized"]
    return row


def run(trainers, sizes, batch, device: torch.device, paths, warmup: int, steps: int, threads: int,
        seed: int = 0) -> list[dict]:
    cases = []
    for t in trainers:
        if t == "joint" and device.type != "cpu":
            logger.warning("train_joint runs on the CPU only: joint is skipped on " + str(device))
            continue
        for s in sizes:
            for p in applicable_paths(t, device, paths):
                cases.append(Case(t, s, batch, str(device), p))
    rows = []
    bar = tqdm(cases, desc="training bench", unit="config", dynamic_ncols=True)
    for case in bar:
        bar.set_postfix_str(f"{case.trainer} {case.size}px {case.path}")
        t0 = time.perf_counter()
        row = run_case(case, warmup, steps, threads, seed)
        rows.append(row)
        logger.info(f"{row['trainer']:9s} {row['size']:4d}px batch {row['batch']:3d} {row['path']:18s} "
                    f"median {row['ms_median']:9.1f} ms  amortized {row['ms_amortized']:9.1f} ms  "
                    f"{row['images_per_s']:8.2f} img/s  ({time.perf_counter() - t0:.0f} s with set-up)")
    for r in rows:
        base = next((b for b in rows if (b["trainer"], b["size"], b["batch"], b["device"]) ==
                     (r["trainer"], r["size"], r["batch"], r["device"]) and b["path"] == "eager"), None)
        r["speedup"] = base["ms_amortized"] / r["ms_amortized"] if base else float("nan")
    return rows


def describe() -> str:
    """What each trainer row runs, read from the presets and train_joint's defaults (never stale)."""
    from training import train_joint
    from training.train_psp import PSPConfig
    from training.train_stylegan2 import StyleGAN2Config

    sg = load_with_overrides(SG2_PRESET, StyleGAN2Config, ["data.source=unused"])
    m = sg.model
    regs = [f"lazy R1 (gamma {sg.r1_gamma:g}) every {sg.d_reg_every} steps" if sg.r1_gamma > 0 else "no R1",
            f"path length every {sg.g_reg_every} steps" if sg.path_reg > 0 else "no path-length term"]
    ps = load_with_overrides(PSP_PRESET, PSPConfig, ["generator=unused", "pairs=unused"])
    enc = f"{ps.encoder.backbone} CompactEncoder width {ps.encoder.width}" if ps.encoder.kind == "compact" \
        else "IR-SE50 GradualStyleEncoder"
    j = train_joint.build_parser().parse_args(["--generator", "-", "--data", "-", "--out", "-"])
    rel = lambda q: q.relative_to(ROOT).as_posix()  # noqa: E731
    return (f"`stylegan2` = `StyleGAN2Trainer.train_step` with {rel(SG2_PRESET)} (style_dim {m.style_dim}, "
            f"n_mlp {m.n_mlp}, channel_max {m.channel_max}, {m.img_channels} channel(s); {', '.join(regs)}; "
            f"DiffAugment '{sg.augment}'; mixing {sg.mixing:g}), size replaced; `amortized` weights each kind of "
            "step (plain, R1, path length) by how often the schedule runs it. "
            f"`psp` = `PSPTrainer.train_step` with {rel(PSP_PRESET)} ({enc}, {ps.pipeline.sketch_size} px "
            f"sketches, LPIPS {'on' if ps.lambda_lpips > 0 else 'off'}, W+ supervision "
            f"{'on' if ps.lambda_latent > 0 else 'off'}) and a frozen generator of the stylegan2 preset's shape. "
            f"`joint` = `train_joint.train_step` with train_joint's defaults ({j.backbone} CompactEncoder width "
            f"{j.width}, {j.sketch_size} px sketches, encoder and generator both trained; its own CLI defaults to "
            f"--threads {j.threads}, the rows here use the thread count above). `channels_last` "
            "converts the 4-D weights of the trained networks; `amp` is the StyleGAN2 trainer's own autocast "
            "fp16 + GradScaler (CUDA only; the other trainers have no mixed precision).")


def table(rows: list[dict], device: torch.device, warmup: int, steps: int, threads: int,
          load: tuple[float, float] | None = None, argv: list[str] | None = None) -> str:
    cmd = "bench/bench_training.py" + ("".join(f" {a}" for a in argv) if argv else "")
    loadtxt = f"; load average {load[0]:.1f} before, {load[1]:.1f} after (other jobs share the machine)" \
        if load else ""
    lines = [SECTION, "",
             f"Measured {time.strftime('%Y-%m-%d')} with `.venv/bin/python {cmd}` on {machine()}; "
             f"device `{device}`, {threads} torch thread(s){loadtxt}. Per configuration: warm-up ({warmup} "
             f"step(s), plus one of each rarer kind of step), then {steps} measured steps of the common kind "
             "and one or more of each rarer kind; all rows in one run, synthetic in-memory batches (data "
             "loading not included).", "",
             "| trainer | size | batch | device | path | ms/step median | ms/step amortized | images/s | "
             "speed-up vs eager |",
             "|---|---:|---:|---|---|---:|---:|---:|---:|"]
    for r in rows:
        sp = f"{r['speedup']:.2f}×" if math.isfinite(r["speedup"]) else "–"
        lines.append(f"| {r['trainer']} | {r['size']} | {r['batch']} | {r['device']} | {r['path']} | "
                     f"{r['ms_median']:.1f} | {r['ms_amortized']:.1f} | {r['images_per_s']:.2f} | {sp} |")
    lines += ["", describe() + f" Reproduce: `.venv/bin/python {cmd}`."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trainers", nargs="+", default=list(TRAINERS), choices=TRAINERS,
                    help="which trainers' steps to time (default: all three)")
    ap.add_argument("--sizes", nargs="+", type=int, default=[64, 128],
                    help="generator output sizes in px (default: 64 128, the shipped model and the size it is "
                         "grown to; a power of two >= 8). pSp and joint sketches stay at their preset 128 px")
    ap.add_argument("--batch", type=int, default=None,
                    help="images per step for every trainer (default: each trainer's preset: stylegan2 8, "
                         "psp 8, joint 16); StyleGAN2 needs 1..4 or a multiple of 4")
    ap.add_argument("--warmup", type=int, default=1, help="untimed warm-up steps per configuration (>= 1)")
    ap.add_argument("--steps", type=int, default=3,
                    help="timed steps of the common kind per configuration (the median is reported)")
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="torch CPU threads (default: all cores; use 1 on a machine that is busy)")
    ap.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto",
                    help="auto: cuda when available, else cpu")
    ap.add_argument("--paths", nargs="+", default=list(PATHS), choices=PATHS,
                    help="fast paths to time; amp rows appear only on CUDA and only for stylegan2 "
                         "(eager is the baseline of the speed-up column)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write-results", action="store_true",
                    help=f"replace the '{SECTION[3:]}' section of --results (atomically; other sections kept)")
    ap.add_argument("--results", type=Path, default=ROOT / "bench" / "RESULTS.md",
                    help="the RESULTS.md that --write-results updates")
    a = ap.parse_args(argv)
    if a.warmup < 1 or a.steps < 1 or a.threads < 1:
        ap.error("--warmup, --steps and --threads must be >= 1")
    if a.device == "cuda" and not torch.cuda.is_available():
        ap.error("--device cuda, but no CUDA device is available")
    device = torch.device(a.device if a.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu"))
    setup_logging()
    torch.set_num_threads(a.threads)
    load0 = os.getloadavg()[0]
    rows = run(a.trainers, a.sizes, a.batch, device, a.paths, a.warmup, a.steps, a.threads, a.seed)
    load1 = os.getloadavg()[0]
    torch.set_num_threads(a.threads)   # machine() reports the thread count
    text = table(rows, device, a.warmup, a.steps, a.threads, (load0, load1),
                 sys.argv[1:] if argv is None else argv)
    print(text)
    if a.write_results:
        write_section(a.results, text, SECTION)
        logger.info(f"wrote the section to {a.results}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
