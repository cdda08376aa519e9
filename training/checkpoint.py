"""Training checkpoints: atomic writes, newest-loadable lookup, pruning.

A checkpoint is written to a temporary file beside its final name and renamed into place
(common.atomic), so a kill or power cut during a save leaves the previous checkpoints intact and at
most a stray `.ckpt_*.tmp`, which the next run removes.
"""
from __future__ import annotations

import re
from pathlib import Path

from loguru import logger

import models
from common.atomic import atomic_torch_save

_NAME = re.compile(r"^ckpt_(\d{8})\.pt$")


def checkpoint_path(directory: str | Path, step: int) -> Path:
    return Path(directory) / f"ckpt_{step:08d}.pt"


def list_checkpoints(directory: str | Path) -> list[Path]:
    """Checkpoints in `directory`, oldest first (by the step in the name)."""
    d = Path(directory)
    if not d.is_dir():
        return []
    return sorted((p for p in d.iterdir() if _NAME.match(p.name)), key=lambda p: int(_NAME.match(p.name)[1]))


def save_checkpoint(directory: str | Path, step: int, state: dict, keep: int = 3) -> Path:
    path = atomic_torch_save(state, checkpoint_path(directory, step))
    for old in list_checkpoints(directory)[:-keep] if keep > 0 else []:
        old.unlink(missing_ok=True)
    return path


def remove_stale_temporaries(directory: str | Path) -> int:
    """Delete half-written `.ckpt_*.tmp` files left by a save that was killed."""
    d = Path(directory)
    stale = list(d.glob(".ckpt_*.tmp")) if d.is_dir() else []
    for p in stale:
        logger.warning(f"{p}: removing a half-written checkpoint left by an interrupted save")
        p.unlink(missing_ok=True)
    return len(stale)


def load_latest(directory: str | Path) -> tuple[Path, dict] | None:
    """(path, contents) of the newest checkpoint that reads back; unreadable ones are reported and skipped."""
    for path in reversed(list_checkpoints(directory)):
        try:
            return path, models.read_checkpoint(path)
        except models.CheckpointError as e:
            logger.warning(f"skipping unreadable checkpoint: {e}")
    return None


def find_resume(resume: str, directory: str | Path) -> tuple[Path, dict] | None:
    """What a trainer's `--resume` names: 'none' -> None; 'auto' -> the newest loadable checkpoint in
    `directory` after clearing half-written ones (None if there is none); anything else -> that file."""
    if resume == "none":
        return None
    if resume == "auto":
        remove_stale_temporaries(directory)
        found = load_latest(directory)
        if found is None:
            logger.info(f"no checkpoint in {directory}: starting from scratch")
        return found
    return Path(resume), models.read_checkpoint(resume)
