"""Scheduler, worker and blender, without threads where possible: gating, newest-wins, latency
origins, latent interpolation and crossfade timing against values computed by hand."""
from __future__ import annotations

import time

import numpy as np
import pytest
import torch

from table_fakes import IdentityBundle, RaisingBundle
from installation.blend import Blender, BlendParams
from installation.frames import Frame
from installation.metrics import Metrics
from installation.scheduler import Scheduler, SchedulerParams
from installation.vision import VisionResult
from installation.worker import InferenceWorker, Job, Mailbox, Result

S = 32


def vres(version: int, t_ink: float | None, value: float = 1.0, ready=True) -> VisionResult:
    z = np.zeros((8, 8), bool)
    sketch = np.full((S, S), value, np.float32)
    return VisionResult(Frame(np.zeros((8, 8), np.uint8), 0.0, version), ready, z, z, z, z, z, sketch,
                        version, t_ink, changed=t_ink is not None)


def test_mailbox_newest_wins():
    m = Mailbox()
    assert m.put(1) is None and m.put(2) == 1
    assert m.take() == 2 and m.take() is None and not m


def test_scheduler_is_change_gated_rate_limited_and_keeps_the_oldest_ink_time():
    s = Scheduler(SchedulerParams(min_interval_s=0.2, refresh_s=0))
    assert s.next_job(0.0, True) is None                         # nothing seen yet
    s.offer(vres(1, 10.0))
    job = s.next_job(10.1, True)
    assert job.ink_version == 1 and job.t_ink == 10.0
    assert s.next_job(10.2, True) is None                        # no change: nothing to do
    s.offer(vres(2, 10.15))
    s.offer(vres(3, 10.18, value=0.5))
    assert s.next_job(10.25, True) is None                       # min interval not over
    assert s.next_job(10.35, False) is None                      # worker busy: wait, do not queue
    job = s.next_job(10.4, True)
    assert job.ink_version == 3 and (job.sketch == 0.5).all()    # newest ink ...
    assert job.t_ink == 10.15                                    # ... answering the oldest change


def test_scheduler_refreshes_and_retries_after_errors():
    s = Scheduler(SchedulerParams(min_interval_s=0.0, refresh_s=5.0, error_retry_s=1.0))
    s.offer(vres(1, 1.0))
    job = s.next_job(1.0, True)
    s.done(Result(job, error="boom"), 1.1)
    assert s.next_job(1.5, True) is None                         # wait error_retry_s
    retry = s.next_job(2.2, True)
    assert retry.ink_version == 1 and retry.t_ink == 1.0         # latency keeps counting from the ink
    s.done(Result(retry, images=[np.zeros((2, 2, 3), np.float32)]), 2.3)
    assert s.next_job(5.0, True) is None
    refresh = s.next_job(7.3, True)
    assert refresh is not None and refresh.t_ink is None         # a refresh has no latency to report


def test_scheduler_ignores_results_before_the_reference():
    s = Scheduler()
    s.offer(vres(1, 1.0, ready=False))
    assert s.next_job(5.0, True) is None


def test_worker_runs_the_bundle_contract_and_interpolates_in_wplus():
    b = IdentityBundle(S, 256)
    w = InferenceWorker(b, Metrics())
    sketch = np.ones((S, S), np.float32)
    sketch[10:20, 5:25] = 0
    r = w.run_job(Job("sketch", sketch))
    assert r.ok and len(r.images) == 1
    assert np.allclose(r.images[0][..., 0], sketch) and r.images[0].shape == (S, S, 3)
    # latent path from "all paper" to the sketch: the identity double makes W+ = pixels,
    # so image k must be paper + (k/steps) (sketch - paper)
    w_from = b.encode(torch.ones(1, 1, S, S))[0]
    r = w.run_job(Job("sketch", sketch, w_from=w_from, steps=4))
    assert len(r.images) == 4 and len(r.latents) == 4
    for k, img in enumerate(r.images, 1):
        assert np.allclose(img[..., 0], 1 + (k / 4) * (sketch - 1), atol=1e-6)


def test_walk_moves_from_the_screen_towards_a_truncated_sample():
    b = IdentityBundle(S, 256)
    w = InferenceWorker(b, Metrics(), truncation=0.5, seed=1)
    start = b.encode(torch.ones(1, 1, S, S))[0]
    r = w.run_job(Job("walk", w_from=start, steps=3))
    assert r.ok and len(r.images) == 3
    lat = torch.stack(r.latents)
    # equal steps along one straight line, starting next to the screen's latent
    d = lat[1:] - lat[:-1]
    assert torch.allclose(d[0], d[1], atol=1e-5) and torch.allclose(lat[0] - start, d[0], atol=1e-5)
    # the end is latent_avg + 0.5 * (mapping(z) - latent_avg): every layer the same w, within tanh's range
    end = lat[-1]
    assert torch.allclose(end, end[0].expand_as(end)) and end.abs().max() <= 0.5


def test_model_exception_becomes_an_error_result_and_is_counted():
    m = Metrics()
    bad = RaisingBundle(IdentityBundle(S, 256), 0.0, 1e18)
    r = InferenceWorker(bad, m).run_job(Job("sketch", np.ones((S, S), np.float32)))
    assert not r.ok and "injected model fault" in r.error
    assert m.get("model_errors") == 1 and m.summary()["errors"] == 1 and m.get("inferences") == 0


def test_worker_thread_newest_job_wins_and_never_blocks_the_caller():
    class Slow(IdentityBundle):
        def encode(self, x):
            time.sleep(0.15)
            return super().encode(x)

    m = Metrics()
    w = InferenceWorker(Slow(S, 256), m).start()
    try:
        t0 = time.perf_counter()
        for v in range(5):
            w.submit(Job("sketch", np.full((S, S), v / 4, np.float32), ink_version=v))
        assert time.perf_counter() - t0 < 0.05                   # submit returns at once
        results = []
        t_end = time.monotonic() + 2
        while time.monotonic() < t_end and (not results or results[-1].job.ink_version != 4):
            r = w.results.take(timeout=0.1)
            if r is not None:
                results.append(r)
        versions = [r.job.ink_version for r in results]
        assert versions[-1] == 4 and len(versions) <= 2          # the middle ones were superseded
        assert m.get("jobs_superseded") >= 3
    finally:
        w.stop()


def _result(value: float, n: int = 1, t_ink=None) -> Result:
    imgs = [np.full((4, 4, 3), value * (k + 1) / n, np.float32) for k in range(n)]
    return Result(Job("sketch", t_ink=t_ink), imgs, [torch.full((2, 3), float(k)) for k in range(n)])


def test_crossfade_is_a_smoothstep_and_reports_first_and_full_frames():
    bl = Blender(BlendParams(mode="crossfade", duration_s=1.0), size=4)
    r = _result(1.0, t_ink=5.0)
    bl.push(r, now=10.0)
    img, first, full = bl.frame(10.0)
    assert first is None and (img == 0).all()                    # at the push instant: nothing of it yet
    img, first, full = bl.frame(10.25)
    assert first is r and full is None
    assert img[0, 0, 0] == pytest.approx(0.25 ** 2 * (3 - 2 * 0.25))
    img, first, full = bl.frame(10.5)
    assert first is None and img[0, 0, 0] == pytest.approx(0.5)
    img, first, full = bl.frame(11.0)
    assert full is r and (img == 1).all()
    assert bl.frame(12.0)[0] is bl.frame(13.0)[0]                # a still picture is the same array


def test_latent_transition_plays_the_steps_and_restarts_from_the_screen():
    bl = Blender(BlendParams(mode="latent", duration_s=0.9, latent_steps=3), size=4)
    r = _result(0.9, n=3)                                        # images 0.3, 0.6, 0.9
    bl.push(r, now=0.0)
    assert bl.frame(0.3)[0][0, 0, 0] == pytest.approx(0.3)
    assert bl.frame(0.6)[0][0, 0, 0] == pytest.approx(0.6)
    assert torch.equal(bl.latent_at(0.6), r.latents[1])
    mid = bl.frame(0.45)[0][0, 0, 0]
    assert 0.3 < mid < 0.6
    r2 = _result(0.0)
    bl.push(r2, now=0.45)                                        # mid-transition: start from the screen
    assert bl.frame(0.45)[0][0, 0, 0] == pytest.approx(mid)
