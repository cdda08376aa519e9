"""The table's YAML config (configs/table.yaml, configs/demo.yaml) as dataclasses.

common.config.load_config rejects unknown keys and wrong types naming the file and the dotted key;
`load_table_config` also checks every file the config refers to, so a kiosk with a typo in a path
stops at start with exit code 2 and a sentence that says which key to fix, rather than at 3 a.m.

Relative paths are resolved against the repository root (the kiosk's working copy).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from common.config import ConfigError, load_config
from common.paths import REPO_ROOT
from installation.blend import BlendParams
from installation.display import DisplayParams
from installation.scheduler import SchedulerParams
from installation.sources import Fault, ReaderParams
from installation.synthetic import SyntheticParams
from installation.vision import VisionParams

DEFAULT_MODEL_HINT = (
    "weights/default.pt is the shipped default model (a QuickDraw sketch encoder + StyleGAN2 trained with "
    "the training/ scripts) and is missing from this checkout: restore it with `git checkout -- weights/`, "
    "retrain it with the commands in weights/MODEL_CARD.md, or set model.path in the config to another "
    "checkpoint (rosinality, pSp or project format, see README.md 'Models and checkpoints')")


@dataclass
class ModelConfig:
    path: Path = Path("weights/default.pt")
    device: Literal["auto", "cpu", "cuda"] = "auto"
    threads: int = 0                  # torch CPU threads for inference; 0 = torch's default
    fp16: bool | None = None          # None: half precision on CUDA, never on CPU

    def __post_init__(self):
        if self.threads < 0:
            raise ValueError(f"model.threads must be >= 0, got {self.threads}")


@dataclass
class SourceConfig:
    kind: Literal["camera", "video", "folder", "synthetic"] = "camera"
    path: Path | None = None          # video file or image folder
    fps: float | None = None          # pacing of video/folder (None: the file's own, 10 for folders)
    loop: bool = True
    synthetic: SyntheticParams = field(default_factory=SyntheticParams)
    faults: list[Fault] = field(default_factory=list)      # injected camera faults: drills and tests
    reader: ReaderParams = field(default_factory=ReaderParams)


@dataclass
class AttractParams:
    enabled: bool = True
    after_s: float = 45.0             # nobody drew (and no hand) for this long: attract mode
    step_s: float = 4.0               # seconds per step of the latent walk
    steps: int = 2                    # images rendered per step (crossfaded between)
    truncation: float = 0.7           # towards the average W: calmer, more typical images
    seed: int | None = None           # None: another walk at every start

    def __post_init__(self):
        if self.after_s <= 0 or self.step_s <= 0 or self.steps < 1 or not 0 <= self.truncation <= 1:
            raise ValueError("attract: after_s, step_s > 0, steps >= 1 and truncation in [0, 1] required")


@dataclass
class OutputParams:
    strip_every_s: float = 5.0        # contact strip into --out this often (0 = never)
    frame_every_s: float = 1.0        # headless: projected frame into --out/frames this often (0 = never)
    keep_frames: int = 30             # newest frames kept in --out/frames
    snapshot_dir: Path = Path("snapshots")

    def __post_init__(self):
        if self.strip_every_s < 0 or self.frame_every_s < 0 or self.keep_frames < 1:
            raise ValueError("output: strip_every_s, frame_every_s >= 0 and keep_frames >= 1 required")


@dataclass
class LoggingParams:
    dir: Path | None = Path("logs")
    level: Literal["TRACE", "DEBUG", "INFO", "SUCCESS", "WARNING", "ERROR"] = "INFO"
    rotation: str = "10 MB"
    retention: int = 10
    status_every_s: float = 10.0      # one status line (fps, latencies, state) this often


@dataclass
class TableConfig:
    hardware: Path = Path("hardware/profiles/default.yaml")
    calibration: Path | None = None   # None: uncalibrated (identity; the synthetic table knows its paper)
    drift_tol_px: float = 4.0         # boot drift check: largest corner offset (camera px) from the file
    calibration_command: list[str] = field(default_factory=lambda: ["python", "-m", "calibration"])
    model: ModelConfig = field(default_factory=ModelConfig)
    source: SourceConfig = field(default_factory=SourceConfig)
    vision: VisionParams = field(default_factory=VisionParams)
    scheduler: SchedulerParams = field(default_factory=SchedulerParams)
    blend: BlendParams = field(default_factory=BlendParams)
    attract: AttractParams = field(default_factory=AttractParams)
    display: DisplayParams = field(default_factory=DisplayParams)
    output: OutputParams = field(default_factory=OutputParams)
    logging: LoggingParams = field(default_factory=LoggingParams)


def resolve(path: Path | None) -> Path | None:
    if path is None:
        return None
    path = Path(path).expanduser()
    return path if path.is_absolute() else REPO_ROOT / path


def load_table_config(path: str | Path) -> TableConfig:
    """Parse and check a table config; every problem is a ConfigError naming the file and key."""
    cfg = load_config(path, TableConfig)
    src = str(path)
    for key, p in (("hardware", cfg.hardware), ("calibration", cfg.calibration)):
        if p is not None and not resolve(p).is_file():
            raise ConfigError(src, key, f"file {resolve(p)} not found"
                              + ("; run `python -m calibration` or set `calibration: null` for an "
                                 "uncalibrated table" if key == "calibration" else ""))
    s = cfg.source
    if s.kind in ("video", "folder"):
        if s.path is None:
            raise ConfigError(src, "source.path", f"source.kind {s.kind!r} needs a path")
        p = resolve(s.path)
        if not (p.is_file() if s.kind == "video" else p.is_dir()):
            raise ConfigError(src, "source.path", f"{'file' if s.kind == 'video' else 'folder'} {p} not found")
    if cfg.drift_tol_px <= 0:
        raise ConfigError(src, "drift_tol_px", f"must be > 0 (camera px), got {cfg.drift_tol_px}")
    if cfg.logging.status_every_s <= 0:
        raise ConfigError(src, "logging.status_every_s", "must be > 0")
    return cfg


def check_model_file(cfg: TableConfig, source: str) -> Path:
    p = resolve(cfg.model.path)
    if not p.is_file():
        hint = DEFAULT_MODEL_HINT if p == resolve(Path("weights/default.pt")) else \
            "point model.path at an existing checkpoint"
        raise ConfigError(source, "model.path", f"model file {p} not found. {hint}")
    return p
