"""Atomic file writes: a kill or power cut mid-write never leaves a half file where a good one was.

Write to a temporary file in the same directory, fsync, then os.replace (atomic on POSIX).
"""
from __future__ import annotations

import datetime as _dt
import io
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; the kiosk user must be able to read what a technician wrote
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    try:  # make the rename itself durable
        dfd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:
        pass
    return path


def atomic_write_text(path: str | Path, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """torch.save into memory first, then one atomic write."""
    import torch

    buf = io.BytesIO()
    torch.save(obj, buf)
    return atomic_write_bytes(path, buf.getvalue())


def atomic_savez(path: str | Path, **arrays: Any) -> Path:
    """np.savez into memory first, then one atomic write (np.savez itself writes in place)."""
    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return atomic_write_bytes(path, buf.getvalue())


def dated_backup(path: str | Path, now: _dt.datetime | None = None) -> Path | None:
    """Copy an existing file to `<stem>.<YYYYmmdd-HHMMSS>.bak<suffix>` beside it; None if absent."""
    path = Path(path)
    if not path.exists():
        return None
    stamp = (now or _dt.datetime.now()).strftime("%Y%m%d-%H%M%S")
    dst = path.with_name(f"{path.stem}.{stamp}.bak{path.suffix}")
    n = 1
    while dst.exists():
        dst = path.with_name(f"{path.stem}.{stamp}-{n}.bak{path.suffix}")
        n += 1
    shutil.copy2(path, dst)
    return dst
