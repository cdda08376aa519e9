import re

from PIL import Image

from calibration import cli
from calibration.store import load_calibration


def _args(*extra):
    return cli.parse_args(["pen-dot", "--simulate", "--grid", "3", "--seed", "21", "--log-level", "WARNING", *extra])


def test_print_sheet(tmp_path, capsys):
    assert cli.main(["--print-sheet", str(tmp_path / "sheet.png")]) == cli.EXIT_OK
    with Image.open(tmp_path / "sheet.png") as im:
        assert im.size == (4961, 3508)                       # A3 at 300 dpi
    assert "laser printer" in capsys.readouterr().out


def test_saves_loads_and_backs_up(tmp_path, capsys):
    out = tmp_path / "calibration.yaml"
    assert cli.run(_args("--out", str(out))) == cli.EXIT_OK
    first = out.read_bytes()
    cal = load_calibration(out)
    assert cal.method == "pen-dot" and cal.n_points == 9 and cal.lens is not None
    report = tmp_path / "calibration_report.png"
    assert 5_000 < report.stat().st_size < 200_000
    stdout = capsys.readouterr().out
    assert re.search(r"^rms_px=\d+\.\d{4} max_px=\d+\.\d{4}$", stdout.splitlines()[-1])
    assert cli.run(_args("--out", str(out))) == cli.EXIT_OK
    backups = list(tmp_path.glob("calibration.*.bak.yaml"))
    assert len(backups) == 1 and backups[0].read_bytes() == first


def test_failed_quality_check_keeps_the_old_file(tmp_path, capsys):
    out = tmp_path / "calibration.yaml"
    out.write_text("previous: calibration\n")
    assert cli.run(_args("--out", str(out), "--tol-mm", "0.01")) == cli.EXIT_CHECKS
    assert out.read_text() == "previous: calibration\n"
    assert (tmp_path / "calibration_report.png").exists()    # the picture still shows why
    assert "[FAIL] accuracy" in capsys.readouterr().out
