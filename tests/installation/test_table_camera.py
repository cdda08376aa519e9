"""hardware/camera.py: the profile is applied in the right order, read back, and every difference
between what was asked and what the driver applied is reported. The drivers here are test doubles
with the quirks of real UVC cameras (rounded fps, clamped exposure, renamed controls)."""
from __future__ import annotations

import subprocess

import cv2
import pytest

from hardware.camera import (AppliedSettings, V4L2Ctl, apply_cv2, apply_profile, apply_v4l2_controls, fourcc_to_str,
                             parse_list_ctrls, resolve_names)
from hardware.profiles import CameraProfile

LIST_CTRLS = """
User Controls

                     brightness 0x00980900 (int)    : min=-64 max=64 step=1 default=0 value=0
                           gain 0x00980913 (int)    : min=0 max=100 step=1 default=0 value=32
           power_line_frequency 0x00980918 (menu)   : min=0 max=2 default=1 value=2 (60 Hz)
				0: Disabled
				1: 50 Hz
				2: 60 Hz

Camera Controls

                  auto_exposure 0x009a0901 (menu)   : min=0 max=3 default=3 value=3 (Aperture Priority Mode)
         exposure_time_absolute 0x009a0902 (int)    : min=1 max=5000 step=1 default=156 value=156 flags=inactive
"""


def test_parse_list_ctrls_reads_values_ranges_and_flags():
    c = parse_list_ctrls(LIST_CTRLS)
    assert set(c) == {"brightness", "gain", "power_line_frequency", "auto_exposure", "exposure_time_absolute"}
    assert c["brightness"].minimum == -64 and c["brightness"].value == 0
    assert c["power_line_frequency"].type == "menu" and c["power_line_frequency"].value == 2
    assert c["exposure_time_absolute"].inactive and not c["gain"].inactive


class FakeCapture:
    """cv2.VideoCapture double: the driver offers 25 fps at most and clamps exposure to 150."""

    def __init__(self):
        self.props = {}

    def set(self, prop, value):
        if prop == cv2.CAP_PROP_FPS:
            value = min(value, 25.0)
        if prop == cv2.CAP_PROP_EXPOSURE:
            value = min(value, 150.0)
        self.props[prop] = value
        return True

    def get(self, prop):
        return self.props.get(prop, 0.0)


def test_cv2_path_reads_back_and_reports_each_difference():
    cap = FakeCapture()
    out = apply_cv2(cap, CameraProfile(fps=30, exposure=156.0, gain=4.0))
    assert fourcc_to_str(cap.get(cv2.CAP_PROP_FOURCC)) == "MJPG"
    assert out.applied["fps"] == 25.0 and out.applied["exposure_time_absolute"] == 150.0
    assert out.size == (1280, 720)
    assert len(out.mismatches) == 2
    assert any("fps" in m and "25" in m for m in out.mismatches)
    assert any("exposure_time_absolute" in m and "150" in m for m in out.mismatches)
    # the exposure mode goes before the exposure, or a UVC driver rejects the manual value
    names = list(out.requested)
    assert names.index("auto_exposure") < names.index("exposure_time_absolute")


class FakeV4L2Device:
    """Answers v4l2-ctl command lines like a camera with an old kernel's control names."""

    def __init__(self, names=("exposure_auto", "exposure_absolute", "gain", "power_line_frequency")):
        self.values = {n: 3 if n == "exposure_auto" else 0 for n in names}
        self.calls: list[list[str]] = []

    def __call__(self, argv, **kw):
        self.calls.append(argv)
        arg = argv[-1]
        if arg == "--list-ctrls":
            lines = []
            for n, v in self.values.items():
                inactive = n == "exposure_absolute" and self.values.get("exposure_auto") == 3
                lines.append(f"{n:>30} 0x00980900 (int)    : min=0 max=5000 step=1 default=0 value={v}"
                             + (" flags=inactive" if inactive else ""))
            return subprocess.CompletedProcess(argv, 0, "\n".join(lines), "")
        name, value = arg.removeprefix("--set-ctrl=").split("=")
        if name not in self.values:
            return subprocess.CompletedProcess(argv, 255, "", f"unknown control '{name}'")
        if name == "exposure_absolute" and self.values["exposure_auto"] == 3:
            return subprocess.CompletedProcess(argv, 255, "", "VIDIOC_S_EXT_CTRLS: failed: Permission denied")
        self.values[name] = int(value)
        return subprocess.CompletedProcess(argv, 0, "", "")


def test_v4l2_ctl_applies_in_order_with_the_drivers_spelling():
    dev = FakeV4L2Device()
    ctl = V4L2Ctl("0", run=dev, executable="/usr/bin/v4l2-ctl")
    out = AppliedSettings()
    profile = CameraProfile(exposure=120.0, gain=8.0, controls={"power_line_frequency": 1})
    apply_v4l2_controls(ctl, profile.v4l2_controls(), out)
    sets = [c[-1] for c in dev.calls if c[-1].startswith("--set-ctrl")]
    assert sets == ["--set-ctrl=exposure_auto=1", "--set-ctrl=exposure_absolute=120", "--set-ctrl=gain=8",
                    "--set-ctrl=power_line_frequency=1"]
    assert dev.calls[0][:3] == ["/usr/bin/v4l2-ctl", "-d", "/dev/video0"]
    assert out.mismatches == [] and out.applied["exposure_absolute"] == 120


def test_v4l2_ctl_reports_unknown_refused_and_inactive_controls():
    dev = FakeV4L2Device(names=("exposure_auto", "exposure_absolute", "gain"))
    ctl = V4L2Ctl("/dev/video2", run=dev, executable="v4l2-ctl")
    out = AppliedSettings()
    # auto exposure stays on: the manual exposure is refused, then inactive
    apply_v4l2_controls(ctl, {"exposure_absolute": 100, "gain": 3, "zoom_absolute": 2}, out)
    text = "\n".join(out.mismatches)
    assert "'zoom_absolute' does not exist" in text
    assert "Permission denied" in text
    assert "exposure_absolute: requested 100, driver applied 0" in text
    assert out.applied["gain"] == 3


def test_resolve_names_maps_kernel_renames_both_ways():
    known_new = parse_list_ctrls(LIST_CTRLS)
    resolved, unknown = resolve_names({"exposure_absolute": 5, "exposure_auto": 1, "focus": 3}, known_new)
    assert resolved == {"exposure_time_absolute": 5, "auto_exposure": 1} and unknown == ["focus"]


def test_apply_profile_without_v4l2_ctl_uses_opencv_and_says_what_it_could_not_do():
    cap = FakeCapture()
    ctl = V4L2Ctl("0", run=None, executable=None)
    ctl.exe = None
    out = apply_profile(cap, CameraProfile(controls={"power_line_frequency": 1}), ctl)
    assert "exposure_time_absolute" in out.applied
    assert any("v4l2-ctl is not installed" in m for m in out.mismatches)


@pytest.mark.parametrize("code,text", [(cv2.VideoWriter_fourcc(*"YUYV"), "YUYV"), (0, "")])
def test_fourcc_decoding(code, text):
    assert fourcc_to_str(code) == text
