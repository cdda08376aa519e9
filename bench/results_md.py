"""bench/RESULTS.md: each benchmark script owns one section and replaces only that one."""
from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common.atomic import atomic_write_text  # noqa: E402


def _heading_end(doc: str, start: int, max_level: int = 6) -> int:
    """Index of the next heading of level <= max_level after `start` (len(doc) if none)."""
    m = re.compile(r"^#{1,%d} " % max_level, re.M).search(doc, start + 1)
    return m.start() if m else len(doc)


def write_section(path: Path, text: str, header: str, parent: str | None = None) -> None:
    """Replace `header`'s text (up to the next heading of any level, so subsections stay) in `path`.

    A missing section goes at the end of `parent`'s section (subsections included), else of the file;
    every other section is kept byte for byte, and sections are separated by one blank line. Written
    atomically, so an interrupted benchmark never leaves a half-written file.
    """
    old = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    if header in old:
        start = old.index(header)
        end = _heading_end(old, start)
    elif parent is not None and parent in old:
        start = end = _heading_end(old, old.index(parent), max_level=parent.index(" "))
    else:
        start = end = len(old)
    head = old[:start] if header in old else old[:start].rstrip("\n") + "\n\n"
    new = head + text.rstrip("\n") + "\n\n" + old[end:]
    atomic_write_text(path, new.rstrip("\n") + "\n")
