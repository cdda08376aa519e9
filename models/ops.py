"""Pure-PyTorch StyleGAN2 ops: FIR resampling (upfirdn2d) and the biased, scaled leaky ReLU.

These reproduce rosinality's CPU reference paths (`upfirdn2d_native`, `fused_leaky_relu`), which match
its CUDA kernels, so checkpoints trained with the compiled ops load and run unchanged on CPU or GPU,
in any floating dtype, without building an extension.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["upfirdn2d", "fused_leaky_relu", "FusedLeakyReLU"]


def _pads(pad: Sequence[int]) -> tuple[int, int, int, int]:
    """(x0, x1, y0, y1) from rosinality's (p0, p1) (same on both axes) or (x0, x1, y0, y1)."""
    if len(pad) == 2:
        return pad[0], pad[1], pad[0], pad[1]
    if len(pad) == 4:
        return tuple(pad)
    raise ValueError(f"upfirdn2d: pad must have 2 or 4 entries (x0, x1[, y0, y1]), got {tuple(pad)}")


def upfirdn2d(x: torch.Tensor, kernel: torch.Tensor, up: int = 1, down: int = 1,
              pad: Sequence[int] = (0, 0)) -> torch.Tensor:
    """Upsample by zero insertion, pad (negative pads crop), convolve with `kernel`, keep every `down`-th sample.

    x: [B, C, H, W]; kernel: [kh, kw], applied to every channel as a true convolution (the kernel is
    flipped, as in the reference; it matters only for non-symmetric kernels).
    Output: [B, C, (H*up + y0 + y1 - kh) // down + 1, (W*up + x0 + x1 - kw) // down + 1].
    """
    if x.ndim != 4:
        raise ValueError(f"upfirdn2d: x must be [B, C, H, W], got shape {tuple(x.shape)}")
    if kernel.ndim != 2:
        raise ValueError(f"upfirdn2d: kernel must be 2-D [kh, kw], got shape {tuple(kernel.shape)}")
    if int(up) < 1 or int(down) < 1:
        raise ValueError(f"upfirdn2d: up and down must be >= 1, got up={up}, down={down}")
    x0, x1, y0, y1 = _pads(pad)
    batch, channels, height, width = x.shape
    kh, kw = kernel.shape
    if height * up + y0 + y1 < kh or width * up + x0 + x1 < kw:
        raise ValueError(f"upfirdn2d: padded input {height * up + y0 + y1}x{width * up + x0 + x1} is smaller "
                         f"than the kernel {kh}x{kw} (x shape {tuple(x.shape)}, up={up}, pad={tuple(pad)})")

    if up > 1:
        # zero insertion: each sample followed by up-1 zeros along both axes (trailing zeros included)
        z = x.new_zeros(batch, channels, height, up, width, up)
        z[:, :, :, 0, :, 0] = x
        x = z.view(batch, channels, height * up, width * up)
    x = F.pad(x, (x0, x1, y0, y1))  # negative entries crop
    # one depthwise conv with stride `down` computes exactly the samples that the reference's
    # full conv followed by [::down, ::down] keeps
    weight = kernel.flip(0, 1).to(dtype=x.dtype, device=x.device).expand(channels, 1, kh, kw).contiguous()
    return F.conv2d(x, weight, stride=down, groups=channels)


def fused_leaky_relu(x: torch.Tensor, bias: torch.Tensor | None = None, negative_slope: float = 0.2,
                     scale: float = 2 ** 0.5) -> torch.Tensor:
    """leaky_relu(x + bias over dim 1, negative_slope) * scale; sqrt(2) keeps the activation variance."""
    if bias is not None:
        if x.ndim < 2 or bias.ndim != 1 or x.shape[1] != bias.shape[0]:
            raise ValueError(f"fused_leaky_relu: bias {tuple(bias.shape)} must be [C] for x {tuple(x.shape)} "
                             f"with C = x.shape[1]")
        x = x + bias.view(1, -1, *([1] * (x.ndim - 2)))
    return F.leaky_relu(x, negative_slope) * scale


class FusedLeakyReLU(nn.Module):
    """Per-channel bias + scaled leaky ReLU; the parameter is named `bias` as in the reference checkpoints."""

    def __init__(self, channel: int, bias: bool = True, negative_slope: float = 0.2, scale: float = 2 ** 0.5):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(channel)) if bias else None
        self.negative_slope = negative_slope
        self.scale = scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fused_leaky_relu(x, self.bias, self.negative_slope, self.scale)
