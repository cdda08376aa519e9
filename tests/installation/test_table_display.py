"""The projector side, headless (SDL dummy driver): look tables, the calibrated warp, screens, keys."""
from __future__ import annotations

import cv2
import numpy as np
import pygame
import pytest

from calibration.store import identity_calibration
from hardware.profiles import DisplayProfile
from installation.display import Display, DisplayParams, apply_look, saturation_lut, tone_lut


@pytest.fixture
def display():
    d = Display(DisplayParams(size=(640, 360)), DisplayProfile(), headless=True)
    yield d
    d.close()


def test_look_tables():
    assert (tone_lut(1.0, 1.0) == np.arange(256)).all()
    assert abs(int(tone_lut(1.0, 2.0)[128]) - 64) <= 1                # gamma 2: mid-grey -> a quarter
    lut = tone_lut(2.0, 1.0)
    assert lut[64] < 64 < 192 < lut[192] and lut[128] in (127, 128, 129)
    rgb = np.zeros((4, 4, 3), np.uint8)
    rgb[..., 0] = 200
    grey = apply_look(rgb, tone_lut(1, 1), saturation_lut(0.0))
    assert (grey[..., 0] == grey[..., 1]).all() and (grey[..., 1] == grey[..., 2]).all()


def test_projection_lands_where_the_calibration_says(display):
    """A dark block at a known paper position must appear where paper_to_projector puts it."""
    corners = [[100, 60], [520, 80], [560, 440], [80, 420]]            # a perspective quad, camera px
    cal = identity_calibration((640, 480), (1280, 720), corners)       # projector 2x the framebuffer
    display.set_calibration(cal)
    img = np.ones((64, 64, 3), np.float32)
    u, v = 40, 18
    img[v:v + 6, u:u + 6] = 0
    out = display.project(img)
    assert out.shape == (360, 640, 3)
    h = np.diag([0.5, 0.5, 1]) @ cal.paper_to_projector(64)           # framebuffer = half the projector
    quad = cv2.perspectiveTransform(np.float64([[[0, 0], [64, 0], [64, 64], [0, 64]]]), h)[0]
    paper = cv2.fillConvexPoly(np.zeros(out.shape[:2], np.uint8), np.int32(np.round(quad)), 1)
    paper = cv2.erode(paper, np.ones((5, 5), np.uint8)).astype(bool)
    ys, xs = np.nonzero(paper & (out[..., 0] < 100))
    expect = cv2.perspectiveTransform(np.float64([[[u + 3, v + 3]]]), h)[0, 0]
    assert len(xs) > 50
    assert abs(xs.mean() - expect[0]) < 1.5 and abs(ys.mean() - expect[1]) < 1.5
    far = np.hypot(*(np.mgrid[0:360, 0:640] - expect[::-1, None, None])) > 40     # the block is ~40 px wide
    assert (out[paper & far] > 200).all()
    # outside the paper the projector stays black
    assert out[5, 5].sum() == 0 and out[-5, -5].sum() == 0
    assert display.project(img) is out                                 # same picture: no second warp


def test_status_screen_and_overlay_draw_on_top(display):
    display.set_calibration(identity_calibration((640, 480), (640, 360)))
    frame = display.project(np.full((64, 64, 3), 0.8, np.float32))
    display.present(frame)
    plain = pygame.surfarray.array3d(display.screen).copy()
    display.present(frame, message=("Camera lost", "reconnecting"))
    lost = pygame.surfarray.array3d(display.screen).copy()
    assert lost.mean() < plain.mean() * 0.5                            # dimmed behind the words
    assert (lost.max(axis=2) > 200).sum() > 200                        # ... and the words are there
    display.overlay_on = True
    display.present(frame, overlay=lambda: ([("camera", np.zeros((48, 64), np.uint8))], ["state RUN"]))
    over = pygame.surfarray.array3d(display.screen)
    assert (over[6:6 + 100, 6:6 + 100] == 0).all()                     # the black camera thumbnail, top left


def test_keys_become_actions_and_toggle_the_overlay(display):
    for key in (pygame.K_TAB, pygame.K_b, pygame.K_s, pygame.K_c, pygame.K_q, pygame.K_x):
        pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=key))
    assert not display.overlay_on
    assert display.poll() == ["overlay", "reference", "snapshot", "calibrate", "quit"]
    assert display.overlay_on
    pygame.event.post(pygame.event.Event(pygame.QUIT))
    assert display.poll() == ["quit"]
