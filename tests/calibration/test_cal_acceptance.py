"""Acceptance 1: `python -m calibration --simulate --seed S`, 20 seeds, 1920x1080 projector:
RMS error against the ground truth <= 1.5 px for every seed, and never worse than 3 px anywhere."""
import re
import subprocess
import sys

import numpy as np

from calibration import cli
from common.paths import REPO_ROOT

LAST_LINE = re.compile(r"^rms_px=(\d+\.\d+) max_px=(\d+\.\d+)$")


def _last_line(text: str) -> tuple[float, float]:
    m = LAST_LINE.match(text.rstrip("\n").splitlines()[-1])
    assert m, f"last stdout line is not 'rms_px=<float> max_px=<float>': {text.splitlines()[-1]!r}"
    return float(m[1]), float(m[2])


def test_twenty_seeds_against_ground_truth(capsys):
    rms, worst = [], []
    for seed in range(20):
        code = cli.run(cli.parse_args(["--simulate", "--seed", str(seed), "--log-level", "WARNING"]))
        assert code == cli.EXIT_OK
        r, m = _last_line(capsys.readouterr().out)
        rms.append(r)
        worst.append(m)
    rms, worst = np.array(rms), np.array(worst)
    print(f"20 seeds: RMS mean {rms.mean():.3f} max {rms.max():.3f} px; worst point {worst.max():.3f} px")
    assert (rms <= 1.5).all(), rms
    assert (worst <= 3.0).all(), worst


def test_module_entry_point_last_line(tmp_path):
    """The real command line, as the checker runs it; nothing is saved without --out."""
    p = subprocess.run([sys.executable, "-m", "calibration", "--simulate", "--seed", "11"], cwd=tmp_path,
                       capture_output=True, text=True, timeout=300,
                       env={"PYTHONPATH": str(REPO_ROOT), "PATH": "/usr/bin:/bin"})
    assert p.returncode == 0, p.stderr[-2000:]
    rms, worst = _last_line(p.stdout)
    assert 0 < rms <= 1.5 and rms <= worst <= 3.0
    assert "dot 16: camera" in p.stderr                   # loguru goes to stderr, the report to stdout
    assert list(tmp_path.iterdir()) == []
