"""DDIM sampling / inversion and the mid-block hook on tiny networks: exactness where the math says exact."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from diffusers import DDIMScheduler, UNet2DModel

from editing.hspace import Edit, ddim_invert, load_model, sample, stored_noises
from editing.hspace.methods import Direction, sweep


pytestmark = pytest.mark.usefixtures("one_thread")


def scheduler() -> DDIMScheduler:
    return DDIMScheduler(clip_sample=False, set_alpha_to_one=True, steps_offset=1)


@pytest.fixture(scope="module")
def unet() -> UNet2DModel:
    torch.manual_seed(0)
    return UNet2DModel(sample_size=16, in_channels=1, out_channels=1, block_out_channels=(8, 16),
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       layers_per_block=1, norm_num_groups=4).eval().requires_grad_(False)


def test_zero_delta_reproduces_the_unedited_sample_exactly(unet):
    x_T = torch.randn(4, 1, 16, 16)
    plain = sample(unet, scheduler(), x_T, 10, record=True)
    n = torch.randn(16, 8, 8)

    zero = sample(unet, scheduler(), x_T, 10, Edit(n, 0.0), record=True)
    moved = sample(unet, scheduler(), x_T, 10, Edit(n, 1.0), record=True)

    assert torch.equal(zero.x0, plain.x0)
    assert all(torch.equal(zero.h[t], plain.h[t]) for t in plain.timesteps)
    assert (moved.x0 - plain.x0).abs().max() > 1e-3  # the hook really is in the loop
    t0 = plain.timesteps[0]
    torch.testing.assert_close(moved.h[t0], plain.h[t0] + n, rtol=0, atol=1e-6)  # recorded h is the edited one


def test_edit_acts_only_inside_its_timestep_window_and_on_listed_timesteps(unet):
    x_T = torch.randn(2, 1, 16, 16)
    plain = sample(unet, scheduler(), x_T, 10, record=True)
    ts = plain.timesteps  # 901, 801, ..., 1
    n = torch.randn(16, 8, 8)

    windowed = sample(unet, scheduler(), x_T, 10, Edit(n, 2.0, t_min=300, t_max=600), record=True)
    listed = sample(unet, scheduler(), x_T, 10, Edit({501: n, 401: n, 301: n}, 2.0), record=True)
    assert ts == [901, 801, 701, 601, 501, 401, 301, 201, 101, 1]
    assert all(torch.equal(windowed.h[t], plain.h[t]) for t in (901, 801, 701, 601))
    torch.testing.assert_close(windowed.h[501], plain.h[501] + 2.0 * n, rtol=0, atol=1e-6)
    assert torch.equal(windowed.x0, listed.x0) and not torch.equal(windowed.x0, plain.x0)
    only_one = sample(unet, scheduler(), x_T, 10, Edit({ts[2]: n}, 1.0), record=True)
    assert all(torch.equal(only_one.h[t], plain.h[t]) for t in ts[:2])
    torch.testing.assert_close(only_one.h[ts[2]], plain.h[ts[2]] + n, rtol=0, atol=1e-6)
    assert not torch.equal(only_one.x0, plain.x0)


def test_per_sample_gamma_and_direction_shapes(unet):
    x_T = torch.randn(3, 1, 16, 16)
    n = torch.randn(3, 16, 8, 8)
    out = sample(unet, scheduler(), x_T, 5, Edit(n, torch.tensor([0.0, 1.0, -1.0])), record=True)
    plain = sample(unet, scheduler(), x_T, 5, record=True)
    t0 = plain.timesteps[0]
    torch.testing.assert_close(out.h[t0], plain.h[t0] + n * torch.tensor([0.0, 1.0, -1.0])[:, None, None, None])
    with pytest.raises(AssertionError, match="gamma"):
        sample(unet, scheduler(), x_T, 5, Edit(n[0], torch.tensor([1.0, 2.0])))
    with pytest.raises(AssertionError, match="does not fit"):
        sample(unet, scheduler(), x_T, 5, Edit(torch.randn(8, 8, 8), 1.0))


def test_sweep_columns_are_the_gammas_and_the_zero_column_is_the_plain_sample(unet):
    x_T = torch.randn(2, 1, 16, 16)
    plain = sample(unet, scheduler(), x_T, 8).x0
    sched = scheduler()
    sched.set_timesteps(8)
    d = Direction("r", {int(t): torch.randn(16, 8, 8) for t in sched.timesteps[:4]})

    grid = sweep(unet, scheduler(), x_T, 8, d, [-1.0, 0.0, 1.0])

    assert grid.shape == (2, 3, 1, 16, 16)
    torch.testing.assert_close(grid[:, 1], plain, rtol=0, atol=2e-4)  # only batch-size rounding differs
    change = (grid - grid[:, 1:2]).flatten(2).norm(dim=2)
    assert torch.all(change[:, [0, 2]] > 1e-3)


def test_stored_noise_sampling_is_replayable_and_zero_edit_exact(unet):
    x_T = torch.randn(2, 1, 16, 16)
    noises = stored_noises(tuple(x_T.shape), 10, seed=7)
    a = sample(unet, scheduler(), x_T, 10, eta=1.0, noises=noises).x0
    b = sample(unet, scheduler(), x_T, 10, Edit(torch.randn(16, 8, 8), 0.0), eta=1.0, noises=noises).x0
    c = sample(unet, scheduler(), x_T, 10, eta=1.0, noises=stored_noises(tuple(x_T.shape), 10, seed=8)).x0
    ddim = sample(unet, scheduler(), x_T, 10).x0
    assert torch.equal(a, b)
    assert (a - c).abs().max() > 1e-2 and (a - ddim).abs().max() > 1e-2
    with pytest.raises(ValueError, match="stored noise"):
        sample(unet, scheduler(), x_T, 10, eta=1.0)


class TimeOnlyEps(torch.nn.Module):
    """eps(x, t) that ignores x: DDIM inversion is then exact, which pins its timesteps and alphas to
    those of scheduler.step (any off-by-one-step misalignment breaks the round trip)."""

    def __init__(self):
        super().__init__()
        self.mid_block = torch.nn.Identity()
        self.pattern = torch.randn(1, 1, 16, 16, dtype=torch.float64)

    def forward(self, x, t):
        return SimpleNamespace(sample=self.mid_block(self.pattern * torch.cos(torch.as_tensor(t) / 200.0)).expand_as(x))


@pytest.mark.parametrize("steps", [10, 50])
def test_ddim_inversion_is_the_exact_reverse_of_sampling_when_eps_ignores_x(steps):
    model = TimeOnlyEps()
    x0 = torch.rand(3, 1, 16, 16, dtype=torch.float64) * 2 - 1
    x_T = ddim_invert(model, scheduler(), x0, steps)
    back = sample(model, scheduler(), x_T, steps).x0
    torch.testing.assert_close(back, x0, rtol=0, atol=1e-10)
    assert (x_T - x0).abs().mean() > 0.1  # it did go somewhere


def test_load_model_names_the_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_model(tmp_path)


def test_asymmetric_edit_changes_only_the_predicted_x0_term():
    """x_prev = sqrt(a_prev) * x0_pred(eps + d) + sqrt(1 - a_prev) * eps (Kwon et al.'s P_t / D_t split);
    the symmetric edit puts eps + d in both terms."""
    model = TimeOnlyEps()
    sched = scheduler()
    x_T = torch.randn(2, 1, 16, 16, dtype=torch.float64)
    n = torch.randn(1, 16, 16, dtype=torch.float64)
    t0, t1 = 901, 801
    a0, a1 = sched.alphas_cumprod[t0].double(), sched.alphas_cumprod[t1].double()
    eps = model(x_T, t0).sample

    def ddim(x0_eps, dir_eps):
        x0_pred = (x_T - (1 - a0).sqrt() * x0_eps) / a0.sqrt()
        return a1.sqrt() * x0_pred + (1 - a1).sqrt() * dir_eps

    asym = sample(model, sched, x_T, 10, Edit({t0: n}, 0.5), record=True)
    sym = sample(model, sched, x_T, 10, Edit({t0: n}, 0.5, asymmetric=False), record=True)
    # the scheduler keeps its alphas in float32: agreement to float32 rounding
    torch.testing.assert_close(asym.x_t[t1], ddim(eps + 0.5 * n, eps), rtol=0, atol=1e-5)
    torch.testing.assert_close(sym.x_t[t1], ddim(eps + 0.5 * n, eps + 0.5 * n), rtol=0, atol=1e-5)
    # the symmetric change is smaller (here by 1 - sqrt((1 - a1) a0 / (a1 (1 - a0))) = 0.58): its terms pull apart
    ratio = (sym.x_t[t1] - ddim(eps, eps)).norm() / (asym.x_t[t1] - ddim(eps, eps)).norm()
    assert abs(ratio - (1 - ((1 - a1) * a0 / (a1 * (1 - a0))).sqrt())) < 1e-5 and ratio < 0.6
