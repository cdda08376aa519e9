"""Label readers: CelebA list_attr, UTKFace and FER2013 label arrays (real files from ../shared when present)."""
from __future__ import annotations

import numpy as np
import pytest

from editing import labels


def test_celeba_reader_on_a_small_file_with_crlf_and_ragged_spacing(tmp_path):
    p = tmp_path / "attr.txt"
    p.write_bytes(b"202599\r\nSmiling Male Young \r\n000001.jpg -1  1  1\r\n000002.jpg  1 -1 -1\r\n")
    a = labels.read_celeba_attributes(p)
    assert a.names == ["Smiling", "Male", "Young"] and a.filenames == ["000001.jpg", "000002.jpg"]
    assert a.declared_count == 202599 and a.values.dtype == np.int8
    assert a.column("Smiling").tolist() == [-1, 1]
    with pytest.raises(KeyError, match="Bald"):
        a.column("Bald")


@pytest.mark.parametrize("body,match", [
    (b"x\nA B\nf 1 1\n", "image count"),
    (b"3\nA B\nf 1\n", "line 3 has 1 values, expected 2"),
    (b"3\nA B\nf 1 0\n", "must be 1 or -1"),
    (b"3\nA B\n", "no attribute rows"),
])
def test_celeba_reader_errors_name_the_line(tmp_path, body, match):
    p = tmp_path / "bad.txt"
    p.write_bytes(body)
    with pytest.raises(ValueError, match=match):
        labels.read_celeba_attributes(p)


def test_celeba_real_file(shared):
    p = shared / "data" / "celeba_attr" / "list_attr_celeba_first20000.txt"
    if not p.is_file():
        pytest.skip(f"{p} is absent")
    a = labels.read_celeba_attributes(p)
    assert a.values.shape == (20000, 40) and len(a.names) == 40
    assert a.filenames[0] == "000001.jpg" and a.filenames[-1] == "020000.jpg"
    assert set(np.unique(a.values)) == {-1, 1}
    # row 1 of CelebA: Smiling = 1, Male = -1, Young = 1 (the published first row)
    first = dict(zip(a.names, a.values[0]))
    assert (first["Smiling"], first["Male"], first["Young"]) == (1, -1, 1)
    assert 0.3 < (a.column("Male") == 1).mean() < 0.5


def test_utkface_labels_real_file(shared):
    p = shared / "data" / "faces_utk" / "utkface_96x96_2310.npz"
    if not p.is_file():
        pytest.skip(f"{p} is absent")
    u = labels.read_utkface_labels(p)
    assert len(u.age) == 2310 and u.age.min() >= 1 and u.age.max() <= 116
    assert np.bincount(u.gender).tolist() == [1208, 1102]
    assert np.bincount(u.race).tolist() == [979, 440, 337, 381, 173]
    # the labels agree with the file names (age_gender_race_...)
    name = str(u.filenames[0]).split("_")
    assert (int(name[0]), int(name[1]), int(name[2])) == (u.age[0], u.gender[0], u.race[0])


def test_fer_labels_real_file(shared):
    p = shared / "data" / "faces_fer" / "fer2013_48x48.npz"
    if not p.is_file():
        pytest.skip(f"{p} is absent")
    f = labels.read_fer_labels(p)
    assert f.class_names == ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    assert np.bincount(f.labels).tolist() == [4953, 547, 5121, 8989, 6198, 6077, 4002]
    assert f.one_vs_rest("happy").sum() == 8989
    assert f.split_names == ["train", "val", "test"]


def test_npz_reader_names_missing_arrays(tmp_path):
    np.savez(tmp_path / "x.npz", age=np.array([1]))
    with pytest.raises(KeyError, match="missing arrays"):
        labels.read_utkface_labels(tmp_path / "x.npz")
