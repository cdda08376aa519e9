"""Frame sources and the latest-frame reader: pacing, stamps, files, faults, reopen with backoff."""
from __future__ import annotations

import time

import cv2
import numpy as np
import pytest

from installation.frames import Frame
from installation.metrics import Metrics
from installation.sources import (CORRUPTIONS, Fault, FaultInjectingSource, FrameSource, ImageFolderSource,
                                  LatestFrameReader, ReaderParams, SourceError, V4L2Camera, VideoFileSource,
                                  frame_problem)
from installation.synthetic import SyntheticParams, SyntheticTable, doodle, stroke_length
from hardware.profiles import CameraProfile


def small_table(**kw) -> SyntheticTable:
    return SyntheticTable(SyntheticParams(width=160, height=120, canvas=128, **kw))


def test_synthetic_frames_are_stamped_paced_and_sized():
    t = small_table(fps=40.0)
    t.open()
    frames = [t.read(0.5) for _ in range(21)]
    assert all(f.image.shape == (120, 160) and f.image.dtype == np.uint8 for f in frames)
    assert [f.seq for f in frames] == list(range(1, 22))
    dt = np.diff([f.t_capture for f in frames])
    assert (dt > 0).all()
    assert 0.4 <= frames[-1].t_capture - frames[0].t_capture <= 0.8       # 20 periods of 25 ms, paced


def test_synthetic_table_draws_progressively_and_is_deterministic():
    a, b = small_table(realtime=False, seed=3), small_table(realtime=False, seed=3)
    a.open(), b.open()
    ink = []
    for _ in range(150):                                                 # 5 s of scene time
        fa, fb = a.read(0.1), b.read(0.1)
        assert np.array_equal(fa.image, fb.image)
        ink.append(int(a.true_ink(64).sum()))
    assert ink[0] == 0 and max(ink) > 50
    growing = np.diff(ink[:np.argmax(ink) + 1])
    assert (growing >= 0).mean() > 0.95 and (growing > 0).sum() > 20   # strokes appear a little at a time


def test_doodles_are_quickdraw_like():
    rng = np.random.default_rng(0)
    for _ in range(30):
        d = doodle(rng)
        pts = np.concatenate(d)
        assert 2 <= len(d) <= 15
        assert pts.min() >= 0.07 and pts.max() <= 0.93
        assert sum(stroke_length(s) for s in d) > 0.5


def _write_frames(folder, n=5, size=(96, 64)):
    paths = []
    for i in range(n):
        img = np.full((size[1], size[0], 3), 40 * i + 20, np.uint8)
        cv2.putText(img, str(i), (10, 40), cv2.FONT_HERSHEY_SIMPLEX, 1, (255, 255, 255), 2)
        p = folder / f"f{i:02d}.png"
        cv2.imwrite(str(p), img)
        paths.append(p)
    return paths


def test_image_folder_in_order_looping_and_errors(tmp_path):
    _write_frames(tmp_path, 3)
    s = ImageFolderSource(tmp_path, fps=100, loop=True)
    s.open()
    frames = [s.read(0.5) for _ in range(5)]
    means = [int(f.image.mean()) for f in frames]
    assert frames[0].image.ndim == 2
    assert means[0] < means[1] < means[2] and means[3] == means[0]
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SourceError, match="no .* images"):
        ImageFolderSource(empty).open()
    with pytest.raises(SourceError, match="not found"):
        ImageFolderSource(tmp_path / "missing").open()


def test_video_file_paced_and_looping(tmp_path):
    path = tmp_path / "table.avi"
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 50, (96, 64))
    for i in range(6):
        w.write(np.full((64, 96, 3), 30 * i + 20, np.uint8))
    w.release()
    s = VideoFileSource(path, fps=50, loop=True)
    s.open()
    t0 = time.monotonic()
    frames = [s.read(0.5) for _ in range(9)]
    assert time.monotonic() - t0 >= 8 / 50 * 0.9                          # paced, not as fast as decoding
    means = [f.image.mean() for f in frames]
    assert np.allclose(means[:6], [20, 50, 80, 110, 140, 170], atol=3)   # in order, grey, decoded
    assert np.allclose(means[6:], means[:3], atol=1)                     # looped
    with pytest.raises(SourceError):
        VideoFileSource(tmp_path / "nope.avi").open()


def test_v4l2_camera_missing_device_raises():
    cam = V4L2Camera(CameraProfile(device="/dev/v4l/by-id/usb-no-such-camera-video-index0"))
    with pytest.raises(SourceError, match="not present"):
        cam.open()


def test_frame_validation_catches_each_corruption_and_no_real_frame():
    t = small_table(realtime=False)
    t.open()
    real = [t.read(0.1) for _ in range(60)]
    assert all(frame_problem(f.image, (160, 120)) is None for f in real)
    src = FaultInjectingSource(small_table(realtime=False), [])
    for kind in CORRUPTIONS:
        assert frame_problem(src._damage(real[0].image, kind), (160, 120)) is not None, kind


# ----------------------------------------------------------------------------------------------
# the reader


class CountingSource(FrameSource):
    """A test double: a camera delivering a numbered frame every `period` seconds."""

    name = "counting"

    def __init__(self, period=0.01):
        super().__init__()
        self.period, self.opens, self.open_times = period, 0, []

    def open(self):
        self.opens += 1
        self.open_times.append(time.monotonic())

    def read(self, timeout):
        time.sleep(self.period)
        img = np.random.default_rng(self._seq).integers(90, 110, (48, 64), dtype=np.uint8)
        return self._frame(img)

    def close(self):
        pass


def wait_for(cond, timeout=3.0):
    t_end = time.monotonic() + timeout
    while time.monotonic() < t_end:
        if cond():
            return True
        time.sleep(0.01)
    return False


def test_reader_keeps_only_the_newest_and_counts_drops():
    m = Metrics()
    r = LatestFrameReader(CountingSource(0.005), m).start()
    try:
        time.sleep(0.3)
        f = r.latest()
        assert isinstance(f, Frame)
        assert m.get("dropped_frames") >= 10                             # nobody read for 0.3 s
        got = []
        assert wait_for(lambda: got.append(r.latest()) or got[-1] is not None)
    finally:
        r.stop()
    assert got[-1].seq > f.seq
    last = r.latest() or got[-1]                   # a frame may have landed between the wait and the stop
    assert r.latest() is None                                            # taken: nothing new after the stop
    # seq counts every frame; compared only after the stop, since the counter moves while the reader runs
    assert m.get("frames_captured") == last.seq


def test_stall_reports_lost_then_recovers_and_reopens():
    m = Metrics()
    src = FaultInjectingSource(CountingSource(0.01), [Fault("stall", 0.3, 1.2)])
    p = ReaderParams(poll_s=0.05, lost_after_s=0.3, reopen_after_s=0.5, backoff_s=0.05, backoff_max_s=0.2)
    r = LatestFrameReader(src, m, p).start()
    try:
        assert wait_for(lambda: r.latest() is not None)
        assert wait_for(lambda: r.status().lost, 1.5)                    # stall at 0.3 s, lost by ~0.6 s
        assert not wait_for(lambda: not r.status().lost, 0.4)            # still stalled
        assert wait_for(lambda: not r.status().lost, 2.0)                # frames back after 1.5 s
        assert r.status().reopens >= 1 and src.inner.opens >= 2          # the silent camera was reopened
        assert m.summary()["errors_by_kind"].get("camera_stall", 0) >= 1
    finally:
        r.stop()


def test_unplug_reopens_with_doubling_backoff():
    m = Metrics()
    inner = CountingSource(0.01)
    src = FaultInjectingSource(inner, [Fault("unplug", 0.2, 1.6)])
    p = ReaderParams(poll_s=0.05, lost_after_s=0.3, backoff_s=0.1, backoff_max_s=0.8)
    r = LatestFrameReader(src, m, p).start()
    try:
        assert wait_for(lambda: r.status().lost, 1.5)
        assert wait_for(lambda: not r.status().lost and r.latest() is not None, 3.0)
        s = m.summary()["errors_by_kind"]
        assert s.get("camera_read", 0) == 1 and s.get("camera_open", 0) >= 2
        gaps = np.diff(inner.open_times)            # only successful opens reach the inner camera
        assert len(inner.open_times) == 2 and gaps[0] >= 1.3
        # attempts at 0.1, 0.2, 0.4, 0.8 s after the failure: 4 tries cover 1.5 s of unplug
        assert 3 <= r.status().reopens <= 6
    finally:
        r.stop()


def test_corrupt_frames_are_counted_skipped_and_never_published():
    m = Metrics()
    t = small_table(realtime=False)
    src = FaultInjectingSource(t, [Fault("corrupt", 0.0, 30.0, rate=0.5)], seed=1)
    r = LatestFrameReader(src, m, ReaderParams(poll_s=0.05)).start()
    seen = []
    try:
        t_end = time.monotonic() + 10.0                    # generous: CI machines are slow and shared
        while time.monotonic() < t_end and (len(seen) <= 5 or m.get("corrupt_frames") < 20):
            f = r.latest()
            if f is not None:
                seen.append(f)
            time.sleep(0.005)                              # leave the GIL to the reader thread
    finally:
        r.stop()
    # Counters are compared only after the reader stopped: while it runs they move between two reads.
    assert m.get("corrupt_frames") >= 20 and len(seen) > 5
    assert all(frame_problem(f.image, (160, 120)) is None for f in seen)
    assert m.summary()["errors_by_kind"]["corrupt_frame"] == m.get("corrupt_frames")
