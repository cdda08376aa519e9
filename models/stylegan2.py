"""StyleGAN2 generator and discriminator (Karras et al. 2020, "Analyzing and Improving the Image Quality of StyleGAN").

With default arguments the state_dict keys, their order, the shapes and the forward numbers are those of
rosinality/stylegan2-pytorch (`model.py`), so its checkpoints and the pSp decoders load with strict=True.
Two additions for the project's small models: `channel_max` caps the channel count of every resolution,
and `img_channels` sets the image channels (1 for the grayscale QuickDraw models).
"""
from __future__ import annotations

import math
import random
from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

from models.ops import FusedLeakyReLU, fused_leaky_relu, upfirdn2d

__all__ = ["Generator", "Discriminator", "stylegan2_channels"]


def stylegan2_channels(size: int, channel_multiplier: int = 2, channel_max: int = 512) -> dict[int, int]:
    """Channels per resolution 4..size: rosinality's table (512 up to 32 px, then 2**14 * channel_multiplier
    / res), capped at channel_max. The default cap only bites for channel_multiplier > 2 (64 px layers)."""
    if not isinstance(size, int) or size < 8 or size & (size - 1):
        raise ValueError(f"size must be a power of two >= 8, got {size!r}")
    channels = {}
    for log_res in range(2, int(math.log2(size)) + 1):
        res = 2 ** log_res
        channels[res] = min(channel_max, 512 if res <= 32 else (2 ** 14 * channel_multiplier) // res)
        if channels[res] < 1:
            raise ValueError(f"no channels left at {res} px (channel_multiplier={channel_multiplier}, "
                             f"channel_max={channel_max}, size={size})")
    return channels


def make_kernel(k: Sequence[float]) -> torch.Tensor:
    """The normalised 2-D FIR filter: outer product of a 1-D kernel with itself, summing to 1."""
    k = torch.tensor(k, dtype=torch.float32)
    if k.ndim == 1:
        k = k[None, :] * k[:, None]
    return k / k.sum()


class PixelNorm(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(torch.mean(x ** 2, dim=1, keepdim=True) + 1e-8)


class Upsample(nn.Module):
    """2x FIR upsampling of the RGB skip; the kernel gains factor**2 to keep the signal's mean."""

    def __init__(self, kernel: Sequence[float], factor: int = 2):
        super().__init__()
        self.factor = factor
        self.register_buffer("kernel", make_kernel(kernel) * factor ** 2)
        p = self.kernel.shape[0] - factor
        self.pad = ((p + 1) // 2 + factor - 1, p // 2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, up=self.factor, pad=self.pad)


class Blur(nn.Module):
    def __init__(self, kernel: Sequence[float], pad: tuple[int, int], upsample_factor: int = 1):
        super().__init__()
        self.register_buffer("kernel", make_kernel(kernel) * upsample_factor ** 2)
        self.pad = pad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return upfirdn2d(x, self.kernel, pad=self.pad)


class EqualConv2d(nn.Module):
    """Conv with equalized learning rate: weights stored N(0, 1), scaled by 1/sqrt(fan_in) at run time."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, stride: int = 1, padding: int = 0,
                 bias: bool = True):
        super().__init__()
        self.weight = nn.Parameter(torch.randn(out_channel, in_channel, kernel_size, kernel_size))
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.stride = stride
        self.padding = padding
        self.bias = nn.Parameter(torch.zeros(out_channel)) if bias else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight * self.scale, bias=self.bias, stride=self.stride, padding=self.padding)

    def extra_repr(self) -> str:
        out_c, in_c, k, _ = self.weight.shape
        return f"{in_c}, {out_c}, {k}, stride={self.stride}, padding={self.padding}"


class EqualLinear(nn.Module):
    """Linear with equalized learning rate; lr_mul slows the mapping network (weights stored / lr_mul)."""

    def __init__(self, in_dim: int, out_dim: int, bias: bool = True, bias_init: float = 0.0, lr_mul: float = 1.0,
                 activation: str | None = None):
        super().__init__()
        if activation not in (None, "fused_lrelu"):
            raise ValueError(f"EqualLinear: activation must be None or 'fused_lrelu', got {activation!r}")
        self.weight = nn.Parameter(torch.randn(out_dim, in_dim).div_(lr_mul))
        self.bias = nn.Parameter(torch.full((out_dim,), float(bias_init))) if bias else None
        self.activation = activation
        self.scale = lr_mul / math.sqrt(in_dim)
        self.lr_mul = lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        bias = None if self.bias is None else self.bias * self.lr_mul
        if self.activation:
            return fused_leaky_relu(F.linear(x, self.weight * self.scale), bias)
        return F.linear(x, self.weight * self.scale, bias=bias)

    def extra_repr(self) -> str:
        return f"{self.weight.shape[1]}, {self.weight.shape[0]}, lr_mul={self.lr_mul}, activation={self.activation}"


class ModulatedConv2d(nn.Module):
    """Weight modulation/demodulation (paper Sec. 2.2), fused: one grouped conv with per-sample weights."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int, demodulate: bool = True,
                 upsample: bool = False, blur_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        self.in_channel = in_channel
        self.out_channel = out_channel
        self.kernel_size = kernel_size
        self.upsample = upsample
        self.demodulate = demodulate
        self.scale = 1 / math.sqrt(in_channel * kernel_size ** 2)
        self.padding = kernel_size // 2
        self.weight = nn.Parameter(torch.randn(1, out_channel, in_channel, kernel_size, kernel_size))
        if upsample:
            # the stride-2 transposed conv gives 2H + k - 2 samples; the blur brings them back to 2H
            factor = 2
            p = (len(blur_kernel) - factor) - (kernel_size - 1)
            self.blur = Blur(blur_kernel, pad=((p + 1) // 2 + factor - 1, p // 2 + 1), upsample_factor=factor)
        self.modulation = EqualLinear(style_dim, in_channel, bias_init=1)

    def extra_repr(self) -> str:
        return (f"{self.in_channel}, {self.out_channel}, {self.kernel_size}, upsample={self.upsample}, "
                f"demodulate={self.demodulate}")

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        batch, in_channel, height, width = x.shape
        k = self.kernel_size
        style = self.modulation(style).view(batch, 1, in_channel, 1, 1)
        weight = self.scale * self.weight * style  # [B, out, in, k, k]
        if self.demodulate:
            demod = torch.rsqrt(weight.pow(2).sum([2, 3, 4]) + 1e-8)
            weight = weight * demod.view(batch, self.out_channel, 1, 1, 1)

        x = x.reshape(1, batch * in_channel, height, width)
        if self.upsample:
            weight = weight.transpose(1, 2).reshape(batch * in_channel, self.out_channel, k, k)
            out = F.conv_transpose2d(x, weight, padding=0, stride=2, groups=batch)
        else:
            weight = weight.reshape(batch * self.out_channel, in_channel, k, k)
            out = F.conv2d(x, weight, padding=self.padding, groups=batch)
        out = out.view(batch, self.out_channel, *out.shape[-2:])
        return self.blur(out) if self.upsample else out


class NoiseInjection(nn.Module):
    def __init__(self):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(1))

    def forward(self, image: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        if noise is None:
            batch, _, height, width = image.shape
            noise = image.new_empty(batch, 1, height, width).normal_()
        return image + self.weight * noise


class ConstantInput(nn.Module):
    def __init__(self, channel: int, size: int = 4):
        super().__init__()
        self.input = nn.Parameter(torch.randn(1, channel, size, size))

    def forward(self, latent: torch.Tensor) -> torch.Tensor:
        return self.input.repeat(latent.shape[0], 1, 1, 1)


class StyledConv(nn.Module):
    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, style_dim: int, upsample: bool = False,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1), demodulate: bool = True):
        super().__init__()
        self.conv = ModulatedConv2d(in_channel, out_channel, kernel_size, style_dim, upsample=upsample,
                                    blur_kernel=blur_kernel, demodulate=demodulate)
        self.noise = NoiseInjection()
        self.activate = FusedLeakyReLU(out_channel)

    def forward(self, x: torch.Tensor, style: torch.Tensor, noise: torch.Tensor | None = None) -> torch.Tensor:
        return self.activate(self.noise(self.conv(x, style), noise=noise))


class ToRGB(nn.Module):
    """1x1 modulated conv to image channels (no demodulation), added to the upsampled running skip."""

    def __init__(self, in_channel: int, style_dim: int, upsample: bool = True,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1), img_channels: int = 3):
        super().__init__()
        if upsample:
            self.upsample = Upsample(blur_kernel)
        self.conv = ModulatedConv2d(in_channel, img_channels, 1, style_dim, demodulate=False)
        self.bias = nn.Parameter(torch.zeros(1, img_channels, 1, 1))

    def forward(self, x: torch.Tensor, style: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        out = self.conv(x, style) + self.bias
        if skip is not None:
            out = out + self.upsample(skip)
        return out


class Generator(nn.Module):
    """Mapping MLP (`style`) + synthesis network with skip ToRGB outputs; n_latent = 2 * log2(size) - 2."""

    def __init__(self, size: int, style_dim: int = 512, n_mlp: int = 8, channel_multiplier: int = 2,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1), lr_mlp: float = 0.01, channel_max: int = 512,
                 img_channels: int = 3):
        super().__init__()
        self.config = dict(size=size, style_dim=style_dim, n_mlp=n_mlp, channel_multiplier=channel_multiplier,
                           blur_kernel=list(blur_kernel), lr_mlp=lr_mlp, channel_max=channel_max,
                           img_channels=img_channels)
        self.channels = stylegan2_channels(size, channel_multiplier, channel_max)
        self.size = size
        self.style_dim = style_dim
        self.img_channels = img_channels

        self.style = nn.Sequential(PixelNorm(), *[
            EqualLinear(style_dim, style_dim, lr_mul=lr_mlp, activation="fused_lrelu") for _ in range(n_mlp)])

        self.input = ConstantInput(self.channels[4])
        self.conv1 = StyledConv(self.channels[4], self.channels[4], 3, style_dim, blur_kernel=blur_kernel)
        self.to_rgb1 = ToRGB(self.channels[4], style_dim, upsample=False, img_channels=img_channels)

        self.log_size = int(math.log2(size))
        self.num_layers = (self.log_size - 2) * 2 + 1
        self.n_latent = self.log_size * 2 - 2

        self.convs = nn.ModuleList()
        self.to_rgbs = nn.ModuleList()
        self.noises = nn.Module()
        for layer_idx in range(self.num_layers):
            res = 2 ** ((layer_idx + 5) // 2)
            self.noises.register_buffer(f"noise_{layer_idx}", torch.randn(1, 1, res, res))

        in_channel = self.channels[4]
        for log_res in range(3, self.log_size + 1):
            out_channel = self.channels[2 ** log_res]
            self.convs.append(StyledConv(in_channel, out_channel, 3, style_dim, upsample=True,
                                         blur_kernel=blur_kernel))
            self.convs.append(StyledConv(out_channel, out_channel, 3, style_dim, blur_kernel=blur_kernel))
            self.to_rgbs.append(ToRGB(out_channel, style_dim, blur_kernel=blur_kernel, img_channels=img_channels))
            in_channel = out_channel

    def make_noise(self) -> list[torch.Tensor]:
        """Fresh N(0, 1) noise maps, one per layer, shaped like the fixed `noises` buffers."""
        return [torch.randn_like(getattr(self.noises, f"noise_{i}")) for i in range(self.num_layers)]

    def mean_latent(self, n_latent: int) -> torch.Tensor:
        """Mean W [1, style_dim] over `n_latent` random z: the truncation centre."""
        z = torch.randn(n_latent, self.style_dim, device=self.input.input.device)
        return self.style(z).mean(0, keepdim=True)

    def get_latent(self, z: torch.Tensor) -> torch.Tensor:
        return self.style(z)

    def forward(self, styles: Sequence[torch.Tensor], return_latents: bool = False, inject_index: int | None = None,
                truncation: float = 1, truncation_latent: torch.Tensor | None = None, input_is_latent: bool = False,
                noise: Sequence[torch.Tensor | None] | None = None,
                randomize_noise: bool = True) -> tuple[torch.Tensor, torch.Tensor | None]:
        """styles: [z] or [z1, z2] ([B, style_dim]); with input_is_latent, [w] / [w1, w2] or [W+ of
        [B, n_latent, style_dim]]. Two styles mix at inject_index (random in [1, n_latent) when None).
        Returns (image [B, img_channels, size, size], W+ [B, n_latent, style_dim] if return_latents else None)."""
        self._check_styles(styles, input_is_latent)
        if not input_is_latent:
            styles = [self.style(s) for s in styles]

        if noise is None:
            noise = ([None] * self.num_layers if randomize_noise
                     else [getattr(self.noises, f"noise_{i}") for i in range(self.num_layers)])
        elif len(noise) != self.num_layers:
            raise ValueError(f"noise must hold {self.num_layers} maps (one per layer, 4 to {self.size} px), "
                             f"got {len(noise)}")

        if truncation < 1:
            if truncation_latent is None:
                raise ValueError(f"truncation={truncation} < 1 needs truncation_latent (e.g. G.mean_latent(4096))")
            styles = [truncation_latent + truncation * (s - truncation_latent) for s in styles]

        latent = self._latent(styles, inject_index)
        return self.synthesis(latent, noise), (latent if return_latents else None)

    def _check_styles(self, styles: Sequence[torch.Tensor], input_is_latent: bool) -> None:
        if isinstance(styles, torch.Tensor):
            raise TypeError(f"styles must be a list of 1 or 2 tensors, e.g. G([z]) or G([w_plus], "
                            f"input_is_latent=True); got a bare tensor {tuple(styles.shape)}")
        if not isinstance(styles, Sequence) or len(styles) not in (1, 2):
            raise TypeError(f"styles must be a list of 1 or 2 tensors, got {type(styles).__name__}"
                            + (f" of length {len(styles)}" if isinstance(styles, Sequence) else ""))
        d, n = self.style_dim, self.n_latent
        for i, s in enumerate(styles):
            ok_2d = s.ndim == 2 and s.shape[1] == d
            ok_wplus = input_is_latent and len(styles) == 1 and s.ndim == 3 and tuple(s.shape[1:]) == (n, d)
            if not (ok_2d or ok_wplus):
                allowed = f"[B, {d}]" + (f" or W+ [B, {n}, {d}]" if input_is_latent and len(styles) == 1 else "")
                raise ValueError(f"styles[{i}] must be {allowed} (input_is_latent={input_is_latent}, "
                                 f"{len(styles)} style(s)); got {tuple(s.shape)}")
        if len(styles) == 2 and styles[0].shape[0] != styles[1].shape[0]:
            raise ValueError(f"mixed styles need the same batch size, got {styles[0].shape[0]} and "
                             f"{styles[1].shape[0]}")

    def _latent(self, styles: list[torch.Tensor], inject_index: int | None) -> torch.Tensor:
        """Broadcast one style to all n_latent layers, or mix two: layers [0, inject_index) from the first."""
        if len(styles) == 1:
            s = styles[0]
            return s if s.ndim == 3 else s.unsqueeze(1).repeat(1, self.n_latent, 1)
        if inject_index is None:
            inject_index = random.randint(1, self.n_latent - 1)
        if not 0 <= inject_index <= self.n_latent:
            raise ValueError(f"inject_index must be in [0, {self.n_latent}], got {inject_index}")
        first = styles[0].unsqueeze(1).repeat(1, inject_index, 1)
        second = styles[1].unsqueeze(1).repeat(1, self.n_latent - inject_index, 1)
        return torch.cat([first, second], 1)

    def synthesis(self, latent: torch.Tensor, noise: Sequence[torch.Tensor | None]) -> torch.Tensor:
        """W+ [B, n_latent, style_dim] and one noise map (or None) per layer -> image."""
        expected = (self.n_latent, self.style_dim)
        if latent.ndim != 3 or tuple(latent.shape[1:]) != expected:
            raise ValueError(f"W+ must be [B, {expected[0]}, {expected[1]}], got {tuple(latent.shape)}")
        out = self.conv1(self.input(latent), latent[:, 0], noise=noise[0])
        skip = self.to_rgb1(out, latent[:, 1])
        i = 1
        for conv_up, conv, noise1, noise2, to_rgb in zip(self.convs[::2], self.convs[1::2], noise[1::2],
                                                         noise[2::2], self.to_rgbs):
            out = conv_up(out, latent[:, i], noise=noise1)
            out = conv(out, latent[:, i + 1], noise=noise2)
            skip = to_rgb(out, latent[:, i + 2], skip)
            i += 2
        return skip


class ConvLayer(nn.Sequential):
    """[Blur] + EqualConv2d + [FusedLeakyReLU]; a Sequential so the keys are `<i>.weight` / `<i>.bias`."""

    def __init__(self, in_channel: int, out_channel: int, kernel_size: int, downsample: bool = False,
                 blur_kernel: Sequence[float] = (1, 3, 3, 1), bias: bool = True, activate: bool = True):
        layers = []
        if downsample:
            factor = 2
            p = (len(blur_kernel) - factor) + (kernel_size - 1)
            layers.append(Blur(blur_kernel, pad=((p + 1) // 2, p // 2)))
            stride, padding = 2, 0
        else:
            stride, padding = 1, kernel_size // 2
        # with an activation the bias lives in FusedLeakyReLU (applied before the nonlinearity)
        layers.append(EqualConv2d(in_channel, out_channel, kernel_size, padding=padding, stride=stride,
                                  bias=bias and not activate))
        if activate:
            layers.append(FusedLeakyReLU(out_channel, bias=bias))
        super().__init__(*layers)


class ResBlock(nn.Module):
    """Two 3x3 convs (the second downsamples) plus a blurred 1x1 skip, summed with 1/sqrt(2).
    rosinality builds both with the default [1, 3, 3, 1] whatever blur_kernel is; for the default they agree."""

    def __init__(self, in_channel: int, out_channel: int, blur_kernel: Sequence[float] = (1, 3, 3, 1)):
        super().__init__()
        self.conv1 = ConvLayer(in_channel, in_channel, 3, blur_kernel=blur_kernel)
        self.conv2 = ConvLayer(in_channel, out_channel, 3, downsample=True, blur_kernel=blur_kernel)
        self.skip = ConvLayer(in_channel, out_channel, 1, downsample=True, blur_kernel=blur_kernel,
                              activate=False, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (self.conv2(self.conv1(x)) + self.skip(x)) / math.sqrt(2)


class Discriminator(nn.Module):
    """Residual discriminator with a minibatch-stddev feature; forward(img [B, C, size, size]) -> logits [B, 1]."""

    def __init__(self, size: int, channel_multiplier: int = 2, blur_kernel: Sequence[float] = (1, 3, 3, 1),
                 channel_max: int = 512, img_channels: int = 3):
        super().__init__()
        self.config = dict(size=size, channel_multiplier=channel_multiplier, blur_kernel=list(blur_kernel),
                           channel_max=channel_max, img_channels=img_channels)
        channels = stylegan2_channels(size, channel_multiplier, channel_max)
        self.size = size
        self.img_channels = img_channels

        convs = [ConvLayer(img_channels, channels[size], 1)]
        in_channel = channels[size]
        for log_res in range(int(math.log2(size)), 2, -1):
            out_channel = channels[2 ** (log_res - 1)]
            convs.append(ResBlock(in_channel, out_channel, blur_kernel))
            in_channel = out_channel
        self.convs = nn.Sequential(*convs)

        self.stddev_group = 4
        self.stddev_feat = 1
        self.final_conv = ConvLayer(in_channel + 1, channels[4], 3)
        self.final_linear = nn.Sequential(
            EqualLinear(channels[4] * 4 * 4, channels[4], activation="fused_lrelu"),
            EqualLinear(channels[4], 1),
        )

    def forward(self, img: torch.Tensor) -> torch.Tensor:
        expected = (self.img_channels, self.size, self.size)
        if img.ndim != 4 or tuple(img.shape[1:]) != expected:
            raise ValueError(f"Discriminator input must be [B, {expected[0]}, {expected[1]}, {expected[2]}], "
                             f"got {tuple(img.shape)}")
        # oneDNN's convolutions, the depthwise blur above all, run markedly faster on NHWC tensors
        out = self.convs(img.contiguous(memory_format=torch.channels_last))
        out = torch.cat([out, self.minibatch_stddev(out)], 1)
        out = self.final_conv(out)
        return self.final_linear(out.flatten(1))

    def minibatch_stddev(self, x: torch.Tensor) -> torch.Tensor:
        """Mean std over groups of min(B, 4) samples; sample b is grouped with b +- k * B / group."""
        batch, channel, height, width = x.shape
        group = min(batch, self.stddev_group)
        if batch % group:
            raise ValueError(f"Discriminator batch size {batch} must be divisible by the minibatch-stddev group "
                             f"size {group} (min(batch, {self.stddev_group}))")
        stddev = x.view(group, -1, self.stddev_feat, channel // self.stddev_feat, height, width)
        stddev = torch.sqrt(stddev.var(0, unbiased=False) + 1e-8)
        stddev = stddev.mean([2, 3, 4], keepdim=True).squeeze(2)
        return stddev.repeat(group, 1, height, width)
