"""V4L2 camera controls: apply a CameraProfile, read every value back, report what the driver applied.

UVC drivers silently round, clamp or ignore requests (an exposure the sensor cannot do, a format the
camera does not offer, a manual exposure while auto exposure is still on). The table's threshold
depends on a fixed exposure, so every requested value is read back and each difference is logged.

Two paths, both used when available:
- OpenCV properties on the open cv2.VideoCapture (format, size, fps, buffer size, exposure, gain);
- `v4l2-ctl` for the profile's extra controls by name and a full read-back, including the
  `flags=inactive` a driver sets on controls that currently have no effect.
"""
from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass, field
from typing import Callable

from loguru import logger

from hardware.profiles import CameraProfile

# Kernel 5.x renamed some controls; profiles and drivers may use either spelling.
CONTROL_ALIASES = {
    "exposure_absolute": "exposure_time_absolute",
    "exposure_auto": "auto_exposure",
    "white_balance_temperature_auto": "white_balance_automatic",
    "focus_auto": "focus_automatic_continuous",
}

Runner = Callable[..., subprocess.CompletedProcess]


@dataclass
class ControlInfo:
    name: str
    type: str
    value: int | None
    minimum: int | None = None
    maximum: int | None = None
    default: int | None = None
    inactive: bool = False


@dataclass
class AppliedSettings:
    """What was asked and what the driver reports, per setting."""

    requested: dict[str, object] = field(default_factory=dict)
    applied: dict[str, object] = field(default_factory=dict)
    mismatches: list[str] = field(default_factory=list)
    controls: dict[str, ControlInfo] = field(default_factory=dict)   # v4l2-ctl read-back, when available

    @property
    def size(self) -> tuple[int, int] | None:
        w, h = self.applied.get("width"), self.applied.get("height")
        return (int(w), int(h)) if w and h else None

    def log(self, device: str) -> None:
        shown = ", ".join(f"{k}={self.applied.get(k)!r}" for k in self.requested)
        logger.info(f"camera {device}: driver applied {shown}")
        for m in self.mismatches:
            logger.warning(f"camera {device}: {m}")


def device_path(device: str) -> str:
    return f"/dev/video{device}" if device.isdigit() else device


def fourcc_to_str(code: float) -> str:
    n = int(code)
    return "".join(chr((n >> (8 * i)) & 0xFF) for i in range(4)).strip("\x00")


def _same(requested, applied) -> bool:
    if isinstance(requested, str) or isinstance(applied, str):
        return str(requested) == str(applied)
    if applied is None:
        return False
    return abs(float(requested) - float(applied)) <= max(0.5, 0.01 * abs(float(requested)))


# ----------------------------------------------------------------------------------------------
# OpenCV properties


def _cv2_requests(profile: CameraProfile, with_controls: bool) -> list[tuple[str, int, object]]:
    """(name, cv2 property, value) in the order V4L2 needs: format before size before rate, the
    exposure mode before the exposure."""
    import cv2

    req: list[tuple[str, int, object]] = [
        ("fourcc", cv2.CAP_PROP_FOURCC, profile.fourcc),
        ("width", cv2.CAP_PROP_FRAME_WIDTH, profile.width),
        ("height", cv2.CAP_PROP_FRAME_HEIGHT, profile.height),
        ("fps", cv2.CAP_PROP_FPS, profile.fps),
        ("buffer_size", cv2.CAP_PROP_BUFFERSIZE, profile.buffer_size),
    ]
    if with_controls:
        # OpenCV's V4L2 backend passes these through as V4L2_CID_EXPOSURE_AUTO / _ABSOLUTE / GAIN.
        props = {"auto_exposure": cv2.CAP_PROP_AUTO_EXPOSURE, "exposure_time_absolute": cv2.CAP_PROP_EXPOSURE,
                 "gain": cv2.CAP_PROP_GAIN}
        req += [(name, props[name], value) for name, value in profile.v4l2_controls().items() if name in props]
    return req


def apply_cv2(cap, profile: CameraProfile, with_controls: bool = True) -> AppliedSettings:
    """Set the profile on an open cv2.VideoCapture and read each property back."""
    import cv2

    out = AppliedSettings()
    requests = _cv2_requests(profile, with_controls)
    for name, prop, value in requests:
        out.requested[name] = value
        arg = cv2.VideoWriter_fourcc(*value) if name == "fourcc" else float(value)
        if not cap.set(prop, arg):
            out.mismatches.append(f"{name}: the driver refused {value!r}")
    for name, prop, value in requests:
        got = cap.get(prop)
        got = fourcc_to_str(got) if name == "fourcc" else got
        out.applied[name] = got
        if not _same(value, got):
            out.mismatches.append(f"{name}: requested {value!r}, driver applied {got!r}")
    return out


# ----------------------------------------------------------------------------------------------
# v4l2-ctl

_CTRL_LINE = re.compile(r"^\s*(?P<name>\w+)\s+0x[0-9a-f]+\s+\((?P<type>\w+)\)\s*:\s*(?P<rest>.*)$")


def parse_list_ctrls(text: str) -> dict[str, ControlInfo]:
    """Parse `v4l2-ctl --list-ctrls` output into ControlInfo by name."""
    out = {}
    for line in text.splitlines():
        m = _CTRL_LINE.match(line)
        if not m:
            continue
        fields = dict(kv.split("=", 1) for kv in m.group("rest").split() if "=" in kv)

        def num(key):
            try:
                return int(fields[key])
            except (KeyError, ValueError):
                return None

        out[m.group("name")] = ControlInfo(m.group("name"), m.group("type"), num("value"), num("min"),
                                           num("max"), num("default"), "inactive" in fields.get("flags", ""))
    return out


class V4L2Ctl:
    """Thin wrapper around the `v4l2-ctl` command line tool (package v4l-utils)."""

    def __init__(self, device: str, run: Runner = subprocess.run, executable: str | None = None):
        self.device = device_path(device)
        self.run = run
        self.exe = executable or shutil.which("v4l2-ctl")

    @property
    def available(self) -> bool:
        return self.exe is not None

    def _call(self, *args: str) -> str:
        r = self.run([self.exe, "-d", self.device, *args], capture_output=True, text=True, timeout=5)
        if r.returncode != 0:
            raise RuntimeError(f"v4l2-ctl {' '.join(args)} failed: {(r.stderr or r.stdout).strip()}")
        return r.stdout

    def list(self) -> dict[str, ControlInfo]:
        return parse_list_ctrls(self._call("--list-ctrls"))

    def set(self, name: str, value: int) -> None:
        self._call(f"--set-ctrl={name}={value}")


def resolve_names(controls: dict[str, int], known: dict[str, ControlInfo]) -> tuple[dict[str, int], list[str]]:
    """Map profile names to the driver's spelling; names it does not have are returned separately."""
    resolved, unknown = {}, []
    reverse = {v: k for k, v in CONTROL_ALIASES.items()}
    for name, value in controls.items():
        for candidate in (name, CONTROL_ALIASES.get(name), reverse.get(name)):
            if candidate and candidate in known:
                resolved[candidate] = value
                break
        else:
            unknown.append(name)
    return resolved, unknown


def apply_v4l2_controls(ctl: V4L2Ctl, controls: dict[str, int], out: AppliedSettings) -> None:
    """Apply controls by name, then read all back into `out` (mismatches and inactive flags)."""
    known = ctl.list()
    resolved, unknown = resolve_names(controls, known)
    for name in unknown:
        out.mismatches.append(f"control {name!r} does not exist on this camera "
                              f"(it has: {', '.join(sorted(known)) or 'none'})")
    for name, value in resolved.items():      # in order: a manual exposure needs auto off first
        try:
            ctl.set(name, value)
        except RuntimeError as e:
            out.mismatches.append(str(e))
    out.controls = ctl.list()
    for name, value in resolved.items():
        out.requested[name] = value
        info = out.controls.get(name)
        out.applied[name] = None if info is None else info.value
        if info is None or info.value != value:
            out.mismatches.append(f"control {name}: requested {value}, driver applied "
                                  f"{None if info is None else info.value}")
        elif info.inactive:
            out.mismatches.append(f"control {name} = {value} is inactive (another control overrides it)")


def apply_profile(cap, profile: CameraProfile, ctl: V4L2Ctl | None = None) -> AppliedSettings:
    """Apply everything the profile asks for, read it back, log what the driver did.

    With v4l2-ctl, every control (exposure mode, exposure, gain, extras) goes through it by name, in
    the profile's order; without, the exposure controls go through OpenCV and extras are reported
    as not applied."""
    ctl = ctl or V4L2Ctl(profile.device)
    out = apply_cv2(cap, profile, with_controls=not ctl.available)
    if ctl.available:
        try:
            apply_v4l2_controls(ctl, profile.v4l2_controls(), out)
        except (RuntimeError, OSError, subprocess.TimeoutExpired) as e:
            out.mismatches.append(f"v4l2-ctl failed: {e}")
    elif profile.controls:
        out.mismatches.append(f"controls {sorted(profile.controls)} not applied: v4l2-ctl is not installed "
                              "(apt install v4l-utils)")
    out.log(device_path(profile.device))
    return out
