"""Training images from a folder, an .npz, or QuickDraw ndjson strokes; the canonical QuickDraw renderer.

Every dataset yields uint8 arrays [H, W, C] at the training size; `to_tensor` maps them to the
generator's range [-1, 1]. Randomness (QuickDraw pen width/darkness, flips) is drawn from a generator
seeded by (seed, epoch, index) that the sampler passes in, so a resumed run sees exactly the images
the uninterrupted run would have seen, whatever the number of loader workers.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterator, Literal

import cv2
import numpy as np
import torch
from loguru import logger
from PIL import Image

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


# PenConfig's defaults are widths for a drawing of this side; trainers of other sizes scale them
PEN_REFERENCE_SIDE = 64


@dataclass
class PenConfig:
    """How QuickDraw strokes are drawn: a felt pen whose width and darkness vary between drawings."""

    width: tuple[float, float] = (1.0, 2.0)       # stroke width in output pixels, drawn uniformly per drawing
    darkness: tuple[float, float] = (0.75, 1.0)   # ink darkness (1 = black), drawn uniformly per drawing
    pressure: float = 0.15                        # per-stroke relative width jitter (pen pressure)
    margin: float = 0.08                          # blank border, fraction of the side
    supersample: int = 4                          # draw at 4x and area-downsample: smooth, pen-like edges

    def scaled_to(self, size: int) -> "PenConfig":
        """The same pen for a drawing of `size` px: widths are given for PEN_REFERENCE_SIDE."""
        return replace(self, width=tuple(w * size / PEN_REFERENCE_SIDE for w in self.width))

    def __post_init__(self):
        if not (0 < self.width[0] <= self.width[1]):
            raise ValueError(f"pen.width must be 0 < low <= high, got {self.width}")
        if not (0 < self.darkness[0] <= self.darkness[1] <= 1):
            raise ValueError(f"pen.darkness must be 0 < low <= high <= 1, got {self.darkness}")
        if not 0 <= self.margin < 0.5:
            raise ValueError(f"pen.margin must be in [0, 0.5), got {self.margin}")


@dataclass
class DataConfig:
    source: str                                              # folder of images / .npz / .ndjson file or folder
    kind: Literal["auto", "folder", "npz", "quickdraw"] = "auto"
    npz_keys: list[str] = field(default_factory=list)        # .npz arrays to use (default: all image arrays)
    invert: bool = False                                     # .npz ink stored bright (QuickDraw bitmaps: 255 = ink)
    categories: list[str] = field(default_factory=list)      # QuickDraw: file stems to use (default: all)
    holdout_per_category: int = 0                            # QuickDraw: last N drawings of each file held out
    recognized_only: bool = False                            # QuickDraw: drop drawings the game did not recognise
    pen: PenConfig = field(default_factory=PenConfig)
    xflip: bool = True                                       # random horizontal flips


# ------------------------------------------------------------------------------------------ QuickDraw


def read_ndjson(path: str | Path, recognized_only: bool = False) -> list[dict]:
    """Drawings of one Quick, Draw! 'simplified' ndjson file; malformed lines are skipped with a warning."""
    path = Path(path)
    drawings, bad = [], 0
    with open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                strokes = d["drawing"]
                if not strokes or any(len(s) < 2 or len(s[0]) != len(s[1]) or not s[0] for s in strokes):
                    raise ValueError("stroke is not [[x...], [y...]] of equal, non-zero length")
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
                bad += 1
                logger.warning(f"{path}:{line_no}: skipped malformed drawing ({e})")
                continue
            if recognized_only and not d.get("recognized", True):
                continue
            drawings.append(d)
    if bad:
        logger.warning(f"{path}: {bad} malformed line(s) skipped")
    return drawings


def render_strokes(strokes: list, size: int, width: float = 1.5, darkness: float = 1.0,
                   pressure: float = 0.0, margin: float = 0.08, supersample: int = 4,
                   rng: np.random.Generator | None = None) -> np.ndarray:
    """Vector strokes [[xs], [ys]] (any units) -> uint8 [size, size], paper 255, ink 255 * (1 - darkness).

    The drawing is centred and scaled to fit inside the margin with its aspect kept. Lines are drawn
    anti-aliased at `supersample` x resolution with round joins, then area-averaged, which gives the soft
    edge of a felt pen rather than the hard pixels of a 1-px raster.
    """
    pts = [np.stack([np.asarray(s[0], np.float64), np.asarray(s[1], np.float64)], 1) for s in strokes]
    allp = np.concatenate(pts)
    lo, hi = allp.min(0), allp.max(0)
    extent = max(float((hi - lo).max()), 1e-6)
    big = size * supersample
    scale = big * (1 - 2 * margin) / extent
    offset = big / 2 - (lo + hi) / 2 * scale
    canvas = np.zeros((big, big), np.uint8)
    shift = 4  # cv2 sub-pixel coordinates: 4 fraction bits
    for p in pts:
        w = width * (1 + pressure * (rng.uniform(-1, 1) if rng is not None else 0.0))
        thick = max(1, int(round(w * supersample)))
        q = np.round((p * scale + offset) * (1 << shift)).astype(np.int32)
        if len(q) == 1:
            q = np.concatenate([q, q])
        cv2.polylines(canvas, [q.reshape(-1, 1, 2)], False, 255, thick, cv2.LINE_AA, shift)
    ink = cv2.resize(canvas, (size, size), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    return np.clip(np.rint(255.0 * (1.0 - darkness * ink)), 0, 255).astype(np.uint8)


class QuickDrawDataset(torch.utils.data.Dataset):
    """QuickDraw ndjson drawings rendered with a varied pen at `size` px (grey, or grey repeated to RGB)."""

    def __init__(self, source: str | Path, size: int, channels: int = 1, categories: list[str] | None = None,
                 pen: PenConfig | None = None, recognized_only: bool = False, holdout_per_category: int = 0,
                 split: Literal["train", "holdout"] = "train", xflip: bool = False, seed: int = 0):
        source = Path(source)
        files = [source] if source.is_file() else sorted(source.glob("*.ndjson"))
        if categories:
            wanted = set(categories)
            unknown = wanted - {f.stem for f in files}
            if unknown:
                raise FileNotFoundError(f"{source}: no ndjson for categories {sorted(unknown)}")
            files = [f for f in files if f.stem in wanted]
        if not files:
            raise FileNotFoundError(f"{source}: no .ndjson files (QuickDraw 'simplified' format expected)")
        self.drawings: list[dict] = []
        for f in files:
            ds = read_ndjson(f, recognized_only)
            cut = len(ds) - holdout_per_category
            self.drawings += ds[:cut] if split == "train" else ds[max(cut, 0):]
        if not self.drawings:
            raise ValueError(f"{source}: no usable drawings in split {split!r} ({len(files)} file(s))")
        self.size, self.channels, self.pen, self.xflip, self.seed = size, channels, pen or PenConfig(), xflip, seed
        self.source = source
        logger.info(f"QuickDraw {source}: {len(self.drawings)} drawings from {len(files)} file(s), split={split}")

    def __len__(self) -> int:
        return len(self.drawings)

    def render(self, index: int, rng: np.random.Generator) -> np.ndarray:
        p = self.pen
        return render_strokes(self.drawings[index]["drawing"], self.size, rng.uniform(*p.width),
                              rng.uniform(*p.darkness), p.pressure, p.margin, p.supersample, rng)

    def __getitem__(self, key) -> np.ndarray:
        index, rng = _split_key(key, self.seed)
        img = self.render(index, rng)[..., None]
        return _finish(img, self.channels, self.xflip, rng)


# ------------------------------------------------------------------------------------------ folders / npz


def _to_channels(img: np.ndarray, channels: int) -> np.ndarray:
    """uint8 [H, W, 1|3|4] -> [H, W, channels] (luma for grey, as cv2's RGB2GRAY)."""
    if img.shape[2] == 4:
        img = img[..., :3]
    if img.shape[2] == channels:
        return img
    if channels == 1:
        return cv2.cvtColor(np.ascontiguousarray(img), cv2.COLOR_RGB2GRAY)[..., None]
    return np.repeat(img, 3, axis=2)


def _resize_square(img: np.ndarray, size: int) -> np.ndarray:
    """Centre-crop to a square, then resize (area when shrinking, which avoids aliasing of thin lines)."""
    h, w = img.shape[:2]
    s = min(h, w)
    img = img[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s]
    if s != size:
        interp = cv2.INTER_AREA if s > size else cv2.INTER_CUBIC
        img = cv2.resize(img, (size, size), interpolation=interp)
    return img if img.ndim == 3 else img[..., None]


def _finish(img: np.ndarray, channels: int, xflip: bool, rng: np.random.Generator) -> np.ndarray:
    img = _to_channels(img, channels)
    if xflip and rng.random() < 0.5:
        img = img[:, ::-1]
    return np.ascontiguousarray(img)


def _split_key(key, seed: int) -> tuple[int, np.random.Generator]:
    """Sampler keys are (index, epoch) pairs; a bare index (plain indexing) uses epoch 0."""
    index, epoch = (key if isinstance(key, tuple) else (key, 0))
    return int(index), np.random.default_rng([seed, epoch, int(index)])


class ImageFolderDataset(torch.utils.data.Dataset):
    """Every image under a folder (recursively). Unreadable files are skipped with a warning and counted.

    Each file is fully decoded once when the folder is scanned, so a truncated JPEG is found before
    training starts rather than hours into it.
    """

    def __init__(self, root: str | Path, size: int, channels: int = 3, xflip: bool = False, seed: int = 0):
        root = Path(root)
        if not root.is_dir():
            raise FileNotFoundError(f"{root}: image folder not found")
        candidates = sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
        self.files, self.skipped = [], []
        for p in candidates:
            try:
                with Image.open(p) as im:
                    im.load()
                self.files.append(p)
            except Exception as e:  # PIL raises OSError, SyntaxError, ValueError... for broken files
                self.skipped.append(p)
                logger.warning(f"{p}: unreadable image skipped ({type(e).__name__}: {e})")
        if not self.files:
            raise ValueError(f"{root}: no readable images ({len(candidates)} candidates, "
                             f"{len(self.skipped)} unreadable; extensions {IMAGE_EXTENSIONS})")
        logger.info(f"image folder {root}: {len(self.files)} images, {len(self.skipped)} skipped as unreadable")
        self.size, self.channels, self.xflip, self.seed = size, channels, xflip, seed

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, key) -> np.ndarray:
        index, rng = _split_key(key, self.seed)
        with Image.open(self.files[index]) as im:
            img = np.asarray(im.convert("L" if self.channels == 1 else "RGB"))
        return _finish(_resize_square(img, self.size), self.channels, self.xflip, rng)


def _npz_images(arr: np.ndarray, name: str) -> np.ndarray:
    """[N, H, W], [N, H, W, C] or [N, C, H, W] (C in 1, 3) -> [N, H, W, C]."""
    if arr.ndim == 3:
        return arr[..., None]
    if arr.ndim == 4 and arr.shape[-1] in (1, 3, 4):
        return arr
    if arr.ndim == 4 and arr.shape[1] in (1, 3):
        return arr.transpose(0, 2, 3, 1)
    raise ValueError(f"{name}: expected images [N, H, W], [N, H, W, C] or [N, C, H, W], got {arr.shape}")


class NpzDataset(torch.utils.data.Dataset):
    """Images stored as arrays in an .npz (uint8 0..255, or float in [0, 1]); several keys are concatenated."""

    def __init__(self, path: str | Path, size: int, channels: int = 1, keys: list[str] | None = None,
                 invert: bool = False, xflip: bool = False, seed: int = 0):
        path = Path(path)
        with np.load(path) as z:
            keys = list(keys or [k for k in z.files if z[k].ndim in (3, 4)])
            missing = [k for k in keys if k not in z.files]
            if missing or not keys:
                raise KeyError(f"{path}: arrays {missing or '(any image array)'} not found; it holds {z.files}")
            arrays = [_npz_images(z[k], f"{path}[{k}]") for k in keys]
        shapes = {a.shape[1:3] for a in arrays}
        if len(shapes) > 1:
            raise ValueError(f"{path}: arrays {keys} have different image sizes {sorted(shapes)}")
        images = np.concatenate(arrays)
        if images.dtype != np.uint8:
            if images.min() < 0 or images.max() > 1:
                raise ValueError(f"{path}: float images must be in [0, 1], got [{images.min()}, {images.max()}]")
            images = np.rint(images * 255).astype(np.uint8)
        self.images = 255 - images if invert else images
        self.size, self.channels, self.xflip, self.seed = size, channels, xflip, seed
        logger.info(f"npz {path}: {len(self.images)} images {self.images.shape[1:]} from keys {keys}")

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key) -> np.ndarray:
        index, rng = _split_key(key, self.seed)
        return _finish(_resize_square(self.images[index], self.size), self.channels, self.xflip, rng)


def detect_kind(source: str | Path) -> str:
    p = Path(source)
    if p.suffix == ".npz":
        return "npz"
    if p.suffix == ".ndjson" or (p.is_dir() and any(p.glob("*.ndjson"))):
        return "quickdraw"
    if p.is_dir():
        return "folder"
    raise FileNotFoundError(f"{p}: data source must be an image folder, an .npz or QuickDraw .ndjson "
                            "(file or folder)")


def build_dataset(cfg: DataConfig, size: int, channels: int, seed: int = 0,
                  split: Literal["train", "holdout"] = "train") -> torch.utils.data.Dataset:
    kind = detect_kind(cfg.source) if cfg.kind == "auto" else cfg.kind
    if kind == "quickdraw":
        return QuickDrawDataset(cfg.source, size, channels, cfg.categories, cfg.pen, cfg.recognized_only,
                                cfg.holdout_per_category, split, cfg.xflip, seed)
    if split != "train":
        raise ValueError(f"a held-out split is only defined for QuickDraw data, not {kind}")
    if kind == "npz":
        return NpzDataset(cfg.source, size, channels, cfg.npz_keys, cfg.invert, cfg.xflip, seed)
    return ImageFolderDataset(cfg.source, size, channels, cfg.xflip, seed)


# ------------------------------------------------------------------------------------------ sampling


class EpochSampler(torch.utils.data.Sampler):
    """Endless (index, epoch) keys: a fresh permutation per epoch from (seed, epoch), sharded by rank.

    It starts at any global sample position, which is what makes resume exact: the run that restarts
    at step k draws the same batches as the run that never stopped. (This replaces DistributedSampler,
    whose set_epoch cannot start in the middle of an epoch.)
    """

    def __init__(self, n: int, seed: int, start: int = 0, rank: int = 0, world_size: int = 1):
        self.n, self.seed, self.start, self.rank, self.world = n, seed, start, rank, world_size

    def __iter__(self) -> Iterator[tuple[int, int]]:
        pos = self.start * self.world + self.rank  # global position of this rank's next sample
        while True:
            epoch, offset = divmod(pos, self.n)
            perm = torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed * 7919 + epoch))
            yield int(perm[offset]), epoch
            pos += self.world

    def __len__(self) -> int:  # endless; DataLoader only needs this for its own bookkeeping
        return 2 ** 62


def to_tensor(batch: np.ndarray | torch.Tensor) -> torch.Tensor:
    """uint8 [B, H, W, C] -> float [B, C, H, W] in [-1, 1]."""
    batch = torch.as_tensor(np.asarray(batch))
    assert batch.dim() == 4 and batch.dtype == torch.uint8, (batch.shape, batch.dtype)
    return batch.permute(0, 3, 1, 2).float().div(127.5).sub(1.0)


def collate(items: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(items))


def make_loader(dataset, batch: int, seed: int, start_sample: int = 0, rank: int = 0, world_size: int = 1,
                num_workers: int = 0) -> Iterator[torch.Tensor]:
    """Endless iterator of uint8 batches [B, H, W, C] starting at this rank's `start_sample`."""
    sampler = EpochSampler(len(dataset), seed, start_sample, rank, world_size)
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, sampler=sampler, num_workers=num_workers,
                                         collate_fn=collate, persistent_workers=num_workers > 0,
                                         drop_last=True)
    return iter(loader)

