"""loguru set-up shared by the runtime, the calibration tool and the training scripts."""
from __future__ import annotations

import sys
from pathlib import Path

from loguru import logger


def setup_logging(log_dir: str | Path | None = None, level: str = "INFO", name: str = "newsnow",
                  rotation: str = "10 MB", retention: int = 10) -> None:
    """Console at `level`; with `log_dir`, also a rotating file (a kiosk runs for months)."""
    logger.remove()
    # Resolve sys.stderr at each write, not once: whoever swaps the stream later (pytest's capture,
    # a service wrapper) would otherwise leave worker threads writing to a closed file.
    logger.add(lambda message: sys.stderr.write(message), level=level, colorize=sys.stderr.isatty(),
               format="<green>{time:HH:mm:ss.SSS}</green> <level>{level: <7}</level> "
                      "<cyan>{name}</cyan> {message}")
    if log_dir is not None:
        Path(log_dir).mkdir(parents=True, exist_ok=True)
        logger.add(Path(log_dir) / f"{name}.log", level="DEBUG", rotation=rotation,
                   retention=retention, enqueue=True, backtrace=False, diagnose=False)
