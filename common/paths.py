"""Where things are: the repository root and the optional ../shared folder (never committed)."""
from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def shared_dir() -> Path | None:
    """The ../shared folder beside the checkout (or $NEWSNOW_SHARED), or None when absent."""
    env = os.environ.get("NEWSNOW_SHARED")
    p = Path(env) if env else REPO_ROOT.parent / "shared"
    return p if p.is_dir() else None
