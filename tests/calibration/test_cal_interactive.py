"""The live layer under SDL's dummy video driver (set in tests/conftest.py): drawing and keys."""
import numpy as np
import pygame
import pytest

from calibration.errors import CalibrationError
from calibration.interactive import CameraReader, ProjectorWindow
from calibration.scene import Scene
from hardware.profiles import CameraProfile, DisplayProfile


@pytest.fixture
def window():
    w = ProjectorWindow(DisplayProfile(width=320, height=180, fullscreen=False))
    yield w
    w.close()


def test_draws_only_the_target_crosshair_and_the_outline(window):
    window.show(Scene(crosshairs=[(40, 40), (200, 120)], target=1,
                      outline=np.array([[10, 150], [300, 150], [300, 170], [10, 170]], float)))
    px = pygame.surfarray.array3d(window.screen)              # [W, H, 3]
    assert px[200, 120].tolist() == [255, 255, 255]            # the target's centre
    assert px[40, 40].tolist() == [0, 0, 0]                    # the other crosshair is not shown
    assert px[150, 150].tolist() == [255, 255, 255]            # the outline's top edge


def test_full_frame_pattern_is_blitted_unchanged(window):
    img = np.zeros((180, 320), np.uint8)
    img[:, 160:] = 255
    window.show(Scene(image=img))
    px = pygame.surfarray.array3d(window.screen)
    assert px[159, 90].tolist() == [0, 0, 0] and px[160, 90].tolist() == [255, 255, 255]


def test_key_names_with_shift(window):
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_LEFT, mod=pygame.KMOD_LSHIFT))
    pygame.event.post(pygame.event.Event(pygame.KEYDOWN, key=pygame.K_RETURN, mod=0))
    pygame.event.post(pygame.event.Event(pygame.QUIT))
    assert window.keys() == ["shift+left", "return", "escape"]


def test_missing_display_and_camera_are_clear_errors():
    with pytest.raises(CalibrationError, match="display index 5 does not exist"):
        ProjectorWindow(DisplayProfile(index=5, fullscreen=False))
    with pytest.raises(CalibrationError, match="could not be opened"):
        CameraReader(CameraProfile(device="/dev/v4l/by-id/no-such-camera"))
