"""Readers for the attribute labels that train InterFaceGAN boundaries on real data sets.

- CelebA `list_attr_celeba.txt`: line 1 the image count of the release, line 2 the 40 attribute names,
  then `<image> <40 values of -1 or 1>` with whitespace of varying width (files may use CRLF).
- UTKFace label arrays (age, gender, race, filenames) from an .npz such as shared/data/faces_utk.
- FER2013 label arrays (labels, class_names, split, split_names, duplicate_of) from an .npz.
Only the label arrays are read from the .npz files (never the images, never pickled objects).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

__all__ = ["CelebAAttributes", "read_celeba_attributes", "UTKFaceLabels", "read_utkface_labels", "FERLabels",
           "read_fer_labels"]


@dataclass(frozen=True)
class CelebAAttributes:
    filenames: list[str]
    names: list[str]
    values: np.ndarray        # int8 (N, n_attributes), -1 or 1
    declared_count: int       # line 1 of the file (202599 for the full release)

    def column(self, name: str) -> np.ndarray:
        """One attribute as (N,) int8 in {-1, 1}."""
        if name not in self.names:
            raise KeyError(f"unknown CelebA attribute {name!r}; known: {', '.join(self.names)}")
        return self.values[:, self.names.index(name)]


def read_celeba_attributes(path: str | Path) -> CelebAAttributes:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: CelebA attribute file not found")
    lines = path.read_text(encoding="ascii", errors="strict").splitlines()
    if len(lines) < 2:
        raise ValueError(f"{path}: expected a count line and a header line, found {len(lines)} line(s)")
    try:
        count = int(lines[0].strip())
    except ValueError:
        raise ValueError(f"{path}: line 1 must be the image count, got {lines[0][:40]!r}") from None
    names = lines[1].split()
    if not names:
        raise ValueError(f"{path}: line 2 must list the attribute names, it is empty")
    filenames, rows = [], []
    for lineno, line in enumerate(lines[2:], start=3):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != len(names) + 1:
            raise ValueError(f"{path}: line {lineno} has {len(parts) - 1} values, expected {len(names)} "
                             f"(one per attribute of line 2)")
        vals = parts[1:]
        bad = [v for v in vals if v not in ("1", "-1")]
        if bad:
            raise ValueError(f"{path}: line {lineno} holds {bad[0]!r}; attribute values must be 1 or -1")
        filenames.append(parts[0])
        rows.append([int(v) for v in vals])
    if not rows:
        raise ValueError(f"{path}: no attribute rows after the header")
    return CelebAAttributes(filenames, names, np.asarray(rows, dtype=np.int8), count)


def _npz_arrays(path: str | Path, keys: tuple[str, ...], what: str) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: {what} .npz not found")
    with np.load(path, allow_pickle=False) as z:
        missing = [k for k in keys if k not in z.files]
        if missing:
            raise KeyError(f"{path}: not a {what} label file, missing arrays {missing} (found {sorted(z.files)})")
        out = {k: z[k] for k in keys}
    n = {k: len(v) for k, v in out.items() if not k.endswith("names")}
    if len(set(n.values())) > 1:
        raise ValueError(f"{path}: label arrays differ in length: {n}")
    return out


@dataclass(frozen=True)
class UTKFaceLabels:
    age: np.ndarray           # int64 years
    gender: np.ndarray        # 0 = male, 1 = female
    race: np.ndarray          # 0 White, 1 Black, 2 Asian, 3 Indian, 4 Others
    filenames: np.ndarray

    GENDER_NAMES = ("male", "female")
    RACE_NAMES = ("White", "Black", "Asian", "Indian", "Others")


def read_utkface_labels(path: str | Path) -> UTKFaceLabels:
    z = _npz_arrays(path, ("age", "gender", "race", "filenames"), "UTKFace")
    if np.any(z["age"] < 0) or not np.isin(z["gender"], (0, 1)).all() or not np.isin(z["race"], np.arange(5)).all():
        raise ValueError(f"{path}: UTKFace labels out of range (age >= 0, gender in 0..1, race in 0..4)")
    return UTKFaceLabels(z["age"], z["gender"], z["race"], z["filenames"])


@dataclass(frozen=True)
class FERLabels:
    labels: np.ndarray        # int64 indexes into class_names
    class_names: list[str]
    split: np.ndarray         # int8 indexes into split_names
    split_names: list[str]
    duplicate_of: np.ndarray  # -1 or the index of the first identical image

    def one_vs_rest(self, name: str) -> np.ndarray:
        """(N,) float: 1 where the expression is `name`, else 0 (scores for an InterFaceGAN boundary)."""
        if name not in self.class_names:
            raise KeyError(f"unknown FER class {name!r}; known: {', '.join(self.class_names)}")
        return (self.labels == self.class_names.index(name)).astype(np.float64)


def read_fer_labels(path: str | Path) -> FERLabels:
    z = _npz_arrays(path, ("labels", "class_names", "split", "split_names", "duplicate_of"), "FER2013")
    names = [str(s) for s in z["class_names"]]
    if z["labels"].min() < 0 or z["labels"].max() >= len(names):
        raise ValueError(f"{path}: labels must index class_names (0..{len(names) - 1})")
    return FERLabels(z["labels"], names, z["split"], [str(s) for s in z["split_names"]], z["duplicate_of"])
