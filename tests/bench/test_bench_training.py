"""bench/bench_training.py on its tiniest configuration (32 px, batch 4, 1 warm-up + 1 measured step, CPU,
one thread): rows with positive finite timings, and a RESULTS.md writer that touches only its own section."""
from __future__ import annotations

import math
import re
import sys

import pytest
import torch

from common.paths import REPO_ROOT

sys.path.insert(0, str(REPO_ROOT / "bench"))
import bench_training  # noqa: E402
import results_md  # noqa: E402

OTHER_TOP = "# Benchmarks\n\n## Table loop (bench/bench_table.py)\n\nlatency | 1 ms\n\n"
OTHER_BOTTOM = "## Models (bench/bench_models.py)\n\n| model | ms |\n|---|---:|\n| psp256 | 1.0 |\n"


pytestmark = pytest.mark.usefixtures("one_thread")


def test_tiniest_run_gives_positive_finite_rows_for_every_trainer():
    rows = bench_training.run(["stylegan2", "psp", "joint"], [32], 4, torch.device("cpu"),
                              ["eager", "channels_last", "amp"], warmup=1, steps=1, threads=1, seed=0)
    got = {(r["trainer"], r["path"]) for r in rows}
    assert got == {(t, p) for t in ("stylegan2", "psp", "joint") for p in ("eager", "channels_last")}  # no amp on CPU
    for r in rows:
        assert set(bench_training.ROW_KEYS) <= set(r), r
        assert r["size"] == 32 and r["batch"] == 4 and r["device"] == "cpu"
        for k in ("ms_median", "ms_amortized", "images_per_s", "speedup"):
            assert math.isfinite(r[k]) and r[k] > 0, (k, r)
        assert r["images_per_s"] == pytest.approx(4 * 1e3 / r["ms_amortized"])
        if r["path"] == "eager":
            assert r["speedup"] == 1.0
    sg2 = next(r for r in rows if r["trainer"] == "stylegan2" and r["path"] == "eager")
    # the preset runs lazy R1 every 16 steps and no path-length term: plain and R1 steps, weighted 15:1
    assert sg2["kinds"].keys() == {"plain", "r1"} and sg2["kinds"]["r1"][0] == pytest.approx(1 / 16)
    assert sg2["steps"] == 2
    text = bench_training.table(rows, torch.device("cpu"), 1, 1, 1, (0.5, 0.6), ["--sizes", "32"])
    assert text.startswith(bench_training.SECTION + "\n") and text.count("\n| stylegan2 | 32 | 4 | cpu |") == 2


def test_section_writer_replaces_only_its_own_section(tmp_path):
    path = tmp_path / "RESULTS.md"
    old_mine = f"{bench_training.SECTION}\n\nold numbers\n\n| a |\n|---|\n| 1 |\n\n"
    path.write_text(OTHER_TOP + old_mine + OTHER_BOTTOM)
    new_mine = f"{bench_training.SECTION}\n\nnew numbers\n"
    results_md.write_section(path, new_mine, bench_training.SECTION)
    assert path.read_text() == OTHER_TOP + new_mine + "\n" + OTHER_BOTTOM       # in place, neighbours intact
    results_md.write_section(path, new_mine, bench_training.SECTION)                                  # idempotent
    assert path.read_text() == OTHER_TOP + new_mine + "\n" + OTHER_BOTTOM
    # as the last section, and absent (appended after everything else)
    path.write_text(OTHER_TOP + OTHER_BOTTOM + "\n" + old_mine)
    results_md.write_section(path, new_mine, bench_training.SECTION)
    assert path.read_text() == OTHER_TOP + OTHER_BOTTOM + "\n" + new_mine
    path.write_text(OTHER_TOP + OTHER_BOTTOM)
    results_md.write_section(path, new_mine, bench_training.SECTION)
    assert path.read_text() == OTHER_TOP + OTHER_BOTTOM + "\n" + new_mine


def test_cli_writes_its_section_into_a_copy_of_the_real_results(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench_training, "setup_logging", lambda *a, **k: None)   # keep the session's sinks
    real = REPO_ROOT / "bench" / "RESULTS.md"
    original = real.read_text() if real.is_file() else OTHER_TOP + OTHER_BOTTOM
    original = re.sub(  # without any training section, as before the first --write-results
        rf"(?ms)^{re.escape(bench_training.SECTION)}$.*?(?=^## |\Z)", "", original)
    path = tmp_path / "RESULTS.md"
    path.write_text(original)
    assert bench_training.main(["--trainers", "joint", "--sizes", "32", "--batch", "4", "--warmup", "1",
                                "--steps", "1", "--threads", "1", "--device", "cpu", "--paths", "eager",
                                "--write-results", "--results", str(path)]) == 0
    text = path.read_text()
    assert text.startswith(original.rstrip("\n") + "\n\n" + bench_training.SECTION + "\n")
    assert "| joint | 32 | 4 | cpu | eager |" in text and "| joint |" in capsys.readouterr().out
