"""Model speed: ms per frame for the pSp sketch forward (256 output) and the generator alone.

Every path is measured in the same run against eager fp32, so the ratios are comparable:
eager fp32, channels_last, torch.compile (+ channels_last), and on CUDA fp16 variants.
Weights are deterministic random (speed does not depend on their values); the largest output
difference to eager fp32 is printed so a fast path that changes the picture is caught.

    python bench/bench_models.py [--iters 10] [--write bench/RESULTS.md] [--no-compile]
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from models.loader import Bundle  # noqa: E402
from results_md import write_section  # noqa: E402
from models.psp import CompactEncoder, GradualStyleEncoder  # noqa: E402
from models.stylegan2 import Generator  # noqa: E402

SECTION = "## Models (bench/bench_models.py)"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return (f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads), "
            f"{gpu}, Python {platform.python_version()}")


def time_ms(fn, iters: int, warmup: int, device: torch.device) -> float:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(iters):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(times)


def build(kind: str, device: torch.device) -> tuple[Bundle, torch.Tensor]:
    torch.manual_seed(0)
    if kind == "psp256":  # the reference pSp sketch model: IR-SE50 + StyleGAN2 256
        g = Generator(256)
        e = GradualStyleEncoder(50, "ir_se", n_styles=g.n_latent, input_nc=1)
        size = 256
    elif kind == "compact128":  # the kiosk path: ResNet-18 encoder + small grayscale generator
        g = Generator(128, style_dim=256, n_mlp=4, channel_max=128, img_channels=1)
        e = CompactEncoder("resnet18", n_styles=g.n_latent, input_nc=1, style_dim=256, input_size=128)
        size = 128
    else:
        raise ValueError(kind)
    with torch.no_grad():
        lat = g.mean_latent(1000)[0].repeat(g.n_latent, 1)
    b = Bundle(generator=g.eval().requires_grad_(False), encoder=e.eval().requires_grad_(False),
               latent_avg=lat, input_size=size).to(device)
    x = (torch.rand(1, 1, size, size) > 0.05).float().to(device)   # white paper with sparse ink
    return b, x


def variants(device: torch.device, use_compile: bool):
    out = [("eager fp32", dict(dtype=torch.float32, channels_last=False, compile=False)),
           ("channels_last fp32", dict(dtype=torch.float32, channels_last=True, compile=False))]
    if use_compile:
        out.append(("compile+channels_last fp32", dict(dtype=torch.float32, channels_last=True, compile=True)))
    if device.type == "cuda":
        out += [("fp16", dict(dtype=torch.float16, channels_last=False, compile=False)),
                ("fp16 channels_last", dict(dtype=torch.float16, channels_last=True, compile=False))]
        if use_compile:
            out.append(("compile+channels_last fp16",
                        dict(dtype=torch.float16, channels_last=True, compile=True)))
    return out


def run(kinds, iters: int, use_compile: bool, device: torch.device) -> list[dict]:
    rows = []
    for kind in kinds:
        base, x = build(kind, device)
        with torch.no_grad():
            ref_img = base.sketch_to_image(x)
            w = base.encode(x)
        for name, v in variants(device, use_compile):
            b = copy.deepcopy(base).to(device, v["dtype"])
            b.optimize(channels_last=v["channels_last"], compile=v["compile"])
            xin = x.to(memory_format=torch.channels_last) if v["channels_last"] else x
            t_compile = time.perf_counter()
            with torch.no_grad():
                out = b.sketch_to_image(xin)          # first call also compiles
            t_compile = time.perf_counter() - t_compile
            diff = (out.float() - ref_img).abs().max().item()
            warm = 2 if v["compile"] else 1
            with torch.no_grad():
                ms_psp = time_ms(lambda: b.sketch_to_image(xin), iters, warm, device)
                wv = w.to(v["dtype"])
                ms_g = time_ms(lambda: b.synthesize(wv), iters, warm, device)
            rows.append(dict(model=kind, path=name, psp_ms=ms_psp, g_ms=ms_g, max_diff=diff,
                             first_call_s=t_compile))
            print(f"{kind:11s} {name:28s} pSp {ms_psp:8.1f} ms  G {ms_g:8.1f} ms  "
                  f"max|diff| {diff:.2e}  first call {t_compile:.1f} s", flush=True)
    for r in rows:
        base = next(b for b in rows if b["model"] == r["model"] and b["path"] == "eager fp32")
        r["psp_speedup"] = base["psp_ms"] / r["psp_ms"]
        r["g_speedup"] = base["g_ms"] / r["g_ms"]
    return rows


def table(rows: list[dict], device: torch.device, iters: int) -> str:
    lines = [SECTION, "",
             f"Measured {time.strftime('%Y-%m-%d')} on {machine()}; device `{device}`; median of {iters} "
             "single-frame calls (batch 1) after warm-up, all rows in one run. `max|diff|` is the largest "
             "absolute difference of the output image to eager fp32 (images here span about ±40 with random "
             "weights). Reproduce: `.venv/bin/python bench/bench_models.py --write bench/RESULTS.md`.", "",
             "| model | path | pSp sketch→image ms | speed-up | generator ms | speed-up | max\\|diff\\| | first call s |",
             "|---|---|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['model']} | {r['path']} | {r['psp_ms']:.1f} | {r['psp_speedup']:.2f}× | "
                     f"{r['g_ms']:.1f} | {r['g_speedup']:.2f}× | {r['max_diff']:.1e} | {r['first_call_s']:.1f} |")
    lines.append("")
    lines.append("`psp256` = IR-SE50 GradualStyleEncoder (1-channel sketch) + StyleGAN2 256 (channel_multiplier 2), "
                 "the reference pSp sketch setting; `compact128` = ResNet-18 CompactEncoder + the small 128 px "
                 "grayscale generator shape used for CPU kiosks.")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--models", nargs="+", default=["psp256", "compact128"], choices=["psp256", "compact128"])
    ap.add_argument("--no-compile", action="store_true", help="skip torch.compile (slow to start on CPU)")
    ap.add_argument("--device", default=None)
    ap.add_argument("--write", type=Path, default=None, help="replace this section in a RESULTS.md")
    a = ap.parse_args(argv)
    device = torch.device(a.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    rows = run(a.models, a.iters, not a.no_compile, device)
    text = table(rows, device, a.iters)
    print(text)
    if a.write:
        write_section(a.write, text, SECTION)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
