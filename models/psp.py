"""pSp encoders (Richardson et al., "Encoding in Style", CVPR 2021) and the pSp wrapper.

GradualStyleEncoder reproduces eladrich/pixel2style2pixel's encoder key for key, so released pSp
checkpoints load with strict=True: an IR-SE ResNet body (ArcFace's, from TreB1eN/InsightFace_Pytorch),
a feature pyramid over three of its stages, and one "map2style" block per W+ entry:

    c1 = body[6]  (128 x 64²)   -> fine styles   [7, n_styles)   from p1 = up(p2) + latlayer2(c1)
    c2 = body[20] (256 x 32²)   -> medium styles [3, 7)          from p2 = up(c3) + latlayer1(c2)
    c3 = body[23] (512 x 16²)   -> coarse styles [0, 3)          from c3

CompactEncoder keeps that coarse/medium/fine pyramid on a small torchvision backbone for
GPU-less kiosks. PSP adds the average latent and runs the StyleGAN2 decoder.
"""
from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import torch
import torch.nn.functional as F
import torchvision
from torch import nn

from models.stylegan2 import EqualLinear

COARSE_END = 3  # styles [0, 3) read the coarsest pyramid level, as in pSp
MIDDLE_END = 7  # styles [3, 7) the middle level, the rest the finest

# --------------------------------------------------------------------------- IR-SE body


class Bottleneck(NamedTuple):
    in_channel: int
    depth: int
    stride: int


def _stage(in_channel: int, depth: int, num_units: int) -> list[Bottleneck]:
    return [Bottleneck(in_channel, depth, 2)] + [Bottleneck(depth, depth, 1)] * (num_units - 1)


# Units per stage for the ArcFace IR-50/100/152 bodies.
_UNITS = {50: (3, 4, 14, 3), 100: (3, 13, 30, 3), 152: (3, 8, 36, 3)}


def get_blocks(num_layers: int) -> list[Bottleneck]:
    """The flat list of bottleneck units of an IR-<num_layers> body (4 stages, 64 -> 512 channels)."""
    if num_layers not in _UNITS:
        raise ValueError(f"num_layers must be one of {sorted(_UNITS)}, got {num_layers}")
    widths = (64, 64, 128, 256, 512)
    return [unit for i, n in enumerate(_UNITS[num_layers]) for unit in _stage(widths[i], widths[i + 1], n)]


class SEModule(nn.Module):
    """Squeeze-and-excitation channel gate (Hu et al. 2018)."""

    def __init__(self, channels: int, reduction: int):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, channels // reduction, kernel_size=1, padding=0, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.fc2 = nn.Conv2d(channels // reduction, channels, kernel_size=1, padding=0, bias=False)
        self.sigmoid = nn.Sigmoid()

    def forward(self, x):
        gate = self.sigmoid(self.fc2(self.relu(self.fc1(self.avg_pool(x)))))
        return x * gate


class BottleneckIR(nn.Module):
    """ArcFace's improved residual unit: BN-conv-PReLU-conv(stride)-BN [-SE], plus a shortcut."""

    def __init__(self, in_channel: int, depth: int, stride: int, use_se: bool):
        super().__init__()
        if in_channel == depth:
            # A 1x1 max-pool is pure striding; it keeps the reference's (parameter-free) module.
            self.shortcut_layer = nn.MaxPool2d(1, stride)
        else:
            self.shortcut_layer = nn.Sequential(
                nn.Conv2d(in_channel, depth, (1, 1), stride, bias=False),
                nn.BatchNorm2d(depth),
            )
        layers = [
            nn.BatchNorm2d(in_channel),
            nn.Conv2d(in_channel, depth, (3, 3), (1, 1), 1, bias=False),
            nn.PReLU(depth),
            nn.Conv2d(depth, depth, (3, 3), stride, 1, bias=False),
            nn.BatchNorm2d(depth),
        ]
        if use_se:
            layers.append(SEModule(depth, 16))
        self.res_layer = nn.Sequential(*layers)

    def forward(self, x):
        return self.res_layer(x) + self.shortcut_layer(x)


# --------------------------------------------------------------------------- pSp encoder


class GradualStyleBlock(nn.Module):
    """map2style: stride-2 convs from `spatial`² down to 1², then an equalized linear layer."""

    def __init__(self, in_c: int, out_c: int, spatial: int):
        super().__init__()
        self.out_c = out_c
        num_pools = int(math.log2(spatial))
        layers = [nn.Conv2d(in_c, out_c, kernel_size=3, stride=2, padding=1), nn.LeakyReLU()]
        for _ in range(num_pools - 1):
            layers += [nn.Conv2d(out_c, out_c, kernel_size=3, stride=2, padding=1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = EqualLinear(out_c, out_c, lr_mul=1)

    def forward(self, x):
        x = self.convs(x)
        return self.linear(x.view(-1, self.out_c))


def upsample_add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """FPN top-down step; bilinear with align_corners=True, as pSp (results differ by ~2e-2 otherwise)."""
    return F.interpolate(x, size=y.shape[-2:], mode="bilinear", align_corners=True) + y


def _style_groups(n_styles: int) -> tuple[range, range, range]:
    return range(0, min(COARSE_END, n_styles)), range(COARSE_END, min(MIDDLE_END, n_styles)), range(MIDDLE_END, n_styles)


class GradualStyleEncoder(nn.Module):
    """pSp's encoder: image [B, input_nc, 256, 256] -> W+ offsets [B, n_styles, style_dim]."""

    input_size = 256  # the map2style blocks are sized for a 16² / 32² / 64² pyramid

    def __init__(self, num_layers: int = 50, mode: str = "ir_se", n_styles: int = 18, input_nc: int = 3,
                 style_dim: int = 512):
        super().__init__()
        if mode not in ("ir", "ir_se"):
            raise ValueError(f"mode must be 'ir' or 'ir_se', got {mode!r}")
        if n_styles < 1:
            raise ValueError(f"n_styles must be >= 1, got {n_styles}")
        self.config = dict(num_layers=num_layers, mode=mode, n_styles=n_styles, input_nc=input_nc,
                           style_dim=style_dim)
        self.n_styles, self.input_nc, self.style_dim = n_styles, input_nc, style_dim
        self.input_layer = nn.Sequential(
            nn.Conv2d(input_nc, 64, (3, 3), 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64)
        )
        self.body = nn.Sequential(*[BottleneckIR(*unit, use_se=mode == "ir_se") for unit in get_blocks(num_layers)])
        # Taps at the last unit of stages 2, 3 and 4 (body[6], body[20], body[23] for IR-50).
        _, self.c1_index, self.c2_index, self.c3_index = (n - 1 for n in itertools.accumulate(_UNITS[num_layers]))

        coarse, middle, _ = _style_groups(n_styles)
        spatial = [16 if i in coarse else 32 if i in middle else 64 for i in range(n_styles)]
        self.styles = nn.ModuleList([GradualStyleBlock(512, style_dim, s) for s in spatial])
        self.latlayer1 = nn.Conv2d(256, 512, kernel_size=1, stride=1, padding=0)
        self.latlayer2 = nn.Conv2d(128, 512, kernel_size=1, stride=1, padding=0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.input_nc, self.input_size, type(self).__name__)
        x = self.input_layer(x)
        for i, unit in enumerate(self.body):
            x = unit(x)
            if i == self.c1_index:
                c1 = x
            elif i == self.c2_index:
                c2 = x
            elif i == self.c3_index:
                c3 = x
        coarse, middle, fine = _style_groups(self.n_styles)
        latents = [self.styles[j](c3) for j in coarse]
        p2 = upsample_add(c3, self.latlayer1(c2))
        latents += [self.styles[j](p2) for j in middle]
        p1 = upsample_add(p2, self.latlayer2(c1))
        latents += [self.styles[j](p1) for j in fine]
        return torch.stack(latents, dim=1)


def _check_input(x: torch.Tensor, input_nc: int, size: int, who: str) -> None:
    if x.dim() != 4 or x.shape[1] != input_nc or tuple(x.shape[-2:]) != (size, size):
        raise ValueError(f"{who} expects input [B, {input_nc}, {size}, {size}], got {list(x.shape)}")


# --------------------------------------------------------------------------- compact kiosk encoder


def _replace_first_conv(conv: nn.Conv2d, input_nc: int) -> nn.Conv2d:
    return nn.Conv2d(input_nc, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, bias=conv.bias is not None)


def _backbone(name: str, input_nc: int) -> tuple[nn.Module, nn.Module, nn.Module, tuple[int, int, int]]:
    """Split a randomly initialised torchvision net into stride-8, -16 and -32 stages and their widths."""
    if name in ("resnet18", "resnet34"):
        net = getattr(torchvision.models, name)(weights=None)
        net.conv1 = _replace_first_conv(net.conv1, input_nc)
        stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2)
        return stem, net.layer3, net.layer4, (128, 256, 512)
    if name == "mobilenet_v3_small":
        features = torchvision.models.mobilenet_v3_small(weights=None).features
        features[0][0] = _replace_first_conv(features[0][0], input_nc)
        # features[12] (1x1 conv to 576 channels) is the classifier's neck; the pyramid does not need it.
        return features[:4], features[4:9], features[9:12], (24, 48, 96)
    raise ValueError(f"backbone must be 'resnet18', 'resnet34' or 'mobilenet_v3_small', got {name!r}")


class StyleGroupHead(nn.Module):
    """All styles of one pyramid level: stride-2 convs down to 4², a 3x3 projection, one linear layer.

    Sharing the convs within a group (pSp has one conv stack per style) is what keeps this cheap on a
    CPU; flattening the 4² map instead of pooling it keeps where the strokes are.
    """

    def __init__(self, width: int, spatial: int, n_styles: int, style_dim: int, proj_dim: int = 64):
        super().__init__()
        self.n_styles, self.style_dim = n_styles, style_dim
        layers = []
        for _ in range(int(math.log2(spatial // 4))):
            layers += [nn.Conv2d(width, width, 3, stride=2, padding=1), nn.LeakyReLU()]
        layers += [nn.Conv2d(width, proj_dim, 3, padding=1), nn.LeakyReLU()]
        self.convs = nn.Sequential(*layers)
        self.linear = nn.Linear(proj_dim * 16, n_styles * style_dim)

    def forward(self, x):
        x = self.convs(x).flatten(1)
        return self.linear(x).view(-1, self.n_styles, self.style_dim)


class CompactEncoder(nn.Module):
    """Small W+ encoder: torchvision backbone (no pretrained weights) + 3-level FPN + grouped style heads.

    sketch [B, input_nc, input_size, input_size] -> W+ offsets [B, n_styles, style_dim], the same
    contract as GradualStyleEncoder, so PSP and the trainers take either.
    """

    def __init__(self, backbone: str = "resnet18", n_styles: int = 14, input_nc: int = 1, style_dim: int = 512,
                 input_size: int = 256, width: int = 256):
        super().__init__()
        if input_size < 128 or input_size & (input_size - 1):
            raise ValueError(f"input_size must be a power of two >= 128 (stride-32 map >= 4²), got {input_size}")
        if n_styles < 1:
            raise ValueError(f"n_styles must be >= 1, got {n_styles}")
        self.config = dict(backbone=backbone, n_styles=n_styles, input_nc=input_nc, style_dim=style_dim,
                           input_size=input_size, width=width)
        self.n_styles, self.input_nc, self.style_dim, self.input_size = n_styles, input_nc, style_dim, input_size
        self.stem, self.stage2, self.stage3, (ch1, ch2, ch3) = _backbone(backbone, input_nc)
        self.lat1 = nn.Conv2d(ch1, width, 1)
        self.lat2 = nn.Conv2d(ch2, width, 1)
        self.lat3 = nn.Conv2d(ch3, width, 1)
        self.heads = nn.ModuleList()
        for group, stride in zip(_style_groups(n_styles), (32, 16, 8)):
            if len(group):
                self.heads.append(StyleGroupHead(width, input_size // stride, len(group), style_dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, self.input_nc, self.input_size, type(self).__name__)
        c1 = self.stem(x)
        c2 = self.stage2(c1)
        c3 = self.stage3(c2)
        p3 = self.lat3(c3)
        p2 = upsample_add(p3, self.lat2(c2))
        p1 = upsample_add(p2, self.lat1(c1))
        codes = torch.cat([head(p) for head, p in zip(self.heads, (p3, p2, p1))], dim=1)
        assert codes.shape[1:] == (self.n_styles, self.style_dim), codes.shape
        return codes


# --------------------------------------------------------------------------- pSp


class PSP(nn.Module):
    """Encoder + StyleGAN2 decoder: sketch -> W+ = encoder(x) + latent_avg -> image.

    state_dict holds 'encoder.*' then 'decoder.*' keys, exactly a pSp checkpoint's layout;
    latent_avg is a non-persistent buffer: it follows .to()/.cuda() but stays out of state_dict,
    as in pSp, where checkpoints store it beside the state_dict.
    """

    def __init__(self, encoder: nn.Module, decoder: nn.Module, latent_avg: torch.Tensor):
        super().__init__()
        n_styles, style_dim = encoder.n_styles, encoder.style_dim
        if (decoder.n_latent, decoder.style_dim) != (n_styles, style_dim):
            raise ValueError(f"encoder gives W+ [{n_styles}, {style_dim}] but the decoder takes "
                             f"[n_latent={decoder.n_latent}, style_dim={decoder.style_dim}]")
        latent_avg = torch.as_tensor(latent_avg, dtype=torch.float32).detach()
        if latent_avg.dim() == 1:
            latent_avg = latent_avg.unsqueeze(0).repeat(n_styles, 1)
        if tuple(latent_avg.shape) != (n_styles, style_dim):
            raise ValueError(f"latent_avg must be [{style_dim}] or [{n_styles}, {style_dim}], "
                             f"got {list(latent_avg.shape)}")
        self.encoder = encoder
        self.decoder = decoder
        self.register_buffer("latent_avg", latent_avg.clone(), persistent=False)
        self.config = dict(encoder_class=type(encoder).__name__, encoder=dict(encoder.config),
                           decoder_class=type(decoder).__name__, decoder=dict(decoder.config))

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Sketch -> W+ [B, n_styles, style_dim] (codes centred on the average latent)."""
        return self.encoder(x) + self.latent_avg

    def forward(self, x: torch.Tensor, return_latents: bool = False):
        # randomize_noise=False: the fixed noise buffers keep the projected image from flickering.
        images, latent = self.decoder([self.encode(x)], input_is_latent=True, randomize_noise=False,
                                      return_latents=return_latents)
        return (images, latent) if return_latents else images
