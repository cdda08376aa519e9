"""The one way to load a model: `models.load(path)` -> Bundle.

Formats recognised (always `torch.load(weights_only=True)`; rosinality training checkpoints carry an
`argparse.Namespace`, which is the one class allowed besides tensors and containers):
- the project's own: {'format': 'newsnow', 'format_version', 'config', 'state_dicts', 'latent_avg', 'meta'}
- rosinality/stylegan2-pytorch: training ({'g', 'd', 'g_ema', 'g_optim', 'd_optim', 'args'}) or converted
  ({'g_ema', 'latent_avg'}); this project's trainer adds 'config' and 'step' to the same layout
- pixel2style2pixel: {'state_dict' ('encoder.*' + 'decoder.*'), 'opts', 'latent_avg'}
- Simo-Serra sketch simplification (released .pth layout '0.weight' .. '44.bias')
- a bare rosinality Generator state_dict

Every failure is a CheckpointError naming the file, the format it was read as, and what is wrong
(missing / unexpected keys, shape mismatches), because a museum technician dropping in a checkpoint
needs to know whether the file is broken, the wrong kind, or built with other options.
"""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from common.atomic import atomic_torch_save

FORMAT_NAME = "newsnow"
FORMAT_VERSION = 1
_MAX_LISTED = 12


class CheckpointError(RuntimeError):
    """A checkpoint cannot be used: unreadable, unknown format, or not matching its network."""


# ----------------------------------------------------------------------------------------------
# Bundle


@dataclass
class Bundle:
    """What a checkpoint holds, ready for inference (eval mode, on `device`)."""

    generator: nn.Module | None = None
    encoder: nn.Module | None = None
    latent_avg: torch.Tensor | None = None          # [n_latent, style_dim]
    input_size: int | None = None                   # the encoder's square input side
    discriminator: nn.Module | None = None
    simplifier: nn.Module | None = None
    meta: dict = field(default_factory=dict)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    dtype: torch.dtype = torch.float32

    @property
    def n_latent(self) -> int:
        return self.generator.n_latent

    @property
    def style_dim(self) -> int:
        return self.generator.style_dim

    @property
    def output_size(self) -> int:
        return self.generator.size

    @property
    def img_channels(self) -> int:
        return self.generator.config.get("img_channels", 3)

    def _check_sketch(self, x: torch.Tensor) -> None:
        if self.encoder is None:
            raise CheckpointError(f"{self.meta.get('path', '<bundle>')}: this checkpoint has no encoder "
                                  "(generator only); sketch_to_image needs a pSp or project checkpoint with one")
        s = self.input_size
        if x.dim() != 4 or x.shape[1] != 1 or x.shape[2] != s or x.shape[3] != s:
            raise ValueError(f"sketch must be [B, 1, {s}, {s}] (paper = 1, ink = 0), got {list(x.shape)}")

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """Sketch [B, 1, S, S] in [0, 1] -> W+ [B, n_latent, style_dim] = E(x) + latent_avg."""
        self._check_sketch(x)
        x = x.to(self.device, self.dtype)
        in_nc = self.encoder.config.get("input_nc", 1)
        if in_nc != 1:
            x = x.expand(-1, in_nc, -1, -1)
        return self.encoder(x) + self.latent_avg.to(self.dtype).unsqueeze(0)

    def synthesize(self, wplus: torch.Tensor) -> torch.Tensor:
        """W+ [B, n_latent, style_dim] -> image [B, C, H, W]; fixed noise (no flicker on the table)."""
        if wplus.dim() != 3 or wplus.shape[1:] != (self.n_latent, self.style_dim):
            raise ValueError(f"W+ must be [B, {self.n_latent}, {self.style_dim}], got {list(wplus.shape)}")
        img, _ = self.generator([wplus.to(self.device, self.dtype)], input_is_latent=True, randomize_noise=False)
        return img

    @torch.no_grad()
    def sketch_to_image(self, x: torch.Tensor) -> torch.Tensor:
        """pSp(x) = G(E(x) + w_avg) for a sketch [B, 1, input_size, input_size] in [0, 1]."""
        return self.synthesize(self.encode(x)).float()

    def optimize(self, channels_last: bool = True, compile: bool = False) -> "Bundle":
        """The fast inference path: channels_last memory format and, optionally, torch.compile.

        Numerics stay those of the eager model (bench/bench_models.py measures the speed-up and the
        largest difference). compile costs tens of seconds at start-up, so the runtime makes it opt-in.
        """
        for name in ("generator", "encoder"):
            m = getattr(self, name)
            if m is None:
                continue
            if channels_last:  # only 4-D tensors have the layout (the modulated weights are 5-D)
                for t in list(m.parameters()) + list(m.buffers()):
                    if t.dim() == 4:
                        t.data = t.data.contiguous(memory_format=torch.channels_last)
            if compile:
                setattr(self, name, torch.compile(m))
        return self

    def to(self, device: str | torch.device, dtype: torch.dtype | None = None) -> "Bundle":
        self.device = torch.device(device)
        self.dtype = dtype or self.dtype
        for name in ("generator", "encoder", "discriminator", "simplifier"):
            m = getattr(self, name)
            if m is not None:
                m.to(self.device, self.dtype)
        if self.latent_avg is not None:
            self.latent_avg = self.latent_avg.to(self.device, self.dtype)
        return self


# ----------------------------------------------------------------------------------------------
# helpers


def _networks():
    """Import lazily: the loader is imported by lightweight code that may never build a network."""
    from models import psp, sketch_simplifier, stylegan2

    return stylegan2, psp, sketch_simplifier


def _load_strict(module: nn.Module, sd: dict, path: Path, fmt: str, what: str) -> None:
    own = module.state_dict()
    missing = [k for k in own if k not in sd]
    unexpected = [k for k in sd if k not in own]
    shapes = [f"{k}: checkpoint {list(sd[k].shape)} vs model {list(own[k].shape)}"
              for k in own if k in sd and tuple(sd[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or shapes:
        lines = [f"{path}: read as {fmt}, the {what} does not match the network built from its options "
                 f"({type(module).__name__} {getattr(module, 'config', {})})."]
        for title, items in (("missing keys", missing), ("unexpected keys", unexpected),
                             ("shape mismatches", shapes)):
            if items:
                more = f" ... (+{len(items) - _MAX_LISTED} more)" if len(items) > _MAX_LISTED else ""
                lines.append(f"  {len(items)} {title}: {', '.join(items[:_MAX_LISTED])}{more}")
        raise CheckpointError("\n".join(lines))
    module.load_state_dict(sd, strict=True)


def _strip(sd: dict, prefix: str) -> dict:
    n = len(prefix) + 1
    return {k[n:]: v for k, v in sd.items() if k.startswith(prefix + ".")}


def _count(sd: dict, pattern: str) -> int:
    rx = re.compile(pattern)
    return len({m.group(1) for k in sd if (m := rx.match(k))})


def _generator_candidates(sd: dict) -> list[dict]:
    """Constructor kwargs consistent with a rosinality Generator state_dict (shapes decide the rest)."""
    if "style.1.weight" not in sd or "conv1.conv.weight" not in sd:
        raise KeyError("style.1.weight / conv1.conv.weight")
    style_dim = sd["style.1.weight"].shape[1]
    n_mlp = _count(sd, r"style\.(\d+)\.weight")
    size = 2 ** (_count(sd, r"to_rgbs\.(\d+)\.") + 2)
    img_channels = sd["to_rgb1.conv.weight"].shape[1]
    c4 = sd["conv1.conv.weight"].shape[1]
    base = dict(size=size, style_dim=style_dim, n_mlp=n_mlp, img_channels=img_channels)
    return [dict(base, channel_multiplier=cm, channel_max=c4) for cm in (2, 1, 4)]


def _discriminator_candidates(sd: dict) -> list[dict]:
    if "convs.0.0.weight" not in sd:
        raise KeyError("convs.0.0.weight")
    img_channels = sd["convs.0.0.weight"].shape[1]
    c_final = sd["final_conv.0.weight"].shape[0]
    n_blocks = _count(sd, r"convs\.(\d+)\.")
    size = 2 ** (n_blocks + 1)
    return [dict(size=size, channel_multiplier=cm, channel_max=c_final, img_channels=img_channels)
            for cm in (2, 1, 4)]


def _build_matching(cls: type, candidates: list[dict], sd: dict) -> nn.Module:
    """First candidate whose state_dict shapes equal the checkpoint's (the most common first)."""
    first = None
    for kwargs in candidates:
        m = cls(**kwargs)
        own = m.state_dict()
        if own.keys() == sd.keys() and all(own[k].shape == sd[k].shape for k in own):
            return m
        first = first or m
    return first  # mismatch: _load_strict will report exactly what differs


def _generator_from(sd: dict, path: Path, fmt: str, config: dict | None = None, what="generator"):
    stylegan2, _, _ = _networks()
    try:
        g = stylegan2.Generator(**config) if config else \
            _build_matching(stylegan2.Generator, _generator_candidates(sd), sd)
    except KeyError as e:
        raise CheckpointError(f"{path}: read as {fmt}, the {what} state_dict lacks {e}; "
                              "it is not a rosinality StyleGAN2 Generator") from None
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: read as {fmt}, the stored {what} config {config} does not build a "
                              f"Generator: {e}") from None
    _load_strict(g, sd, path, fmt, what)
    return g


def _discriminator_from(sd: dict, path: Path, fmt: str, config: dict | None = None):
    stylegan2, _, _ = _networks()
    try:
        d = stylegan2.Discriminator(**config) if config else \
            _build_matching(stylegan2.Discriminator, _discriminator_candidates(sd), sd)
    except KeyError as e:
        raise CheckpointError(f"{path}: read as {fmt}, the discriminator state_dict lacks {e}") from None
    _load_strict(d, sd, path, fmt, "discriminator")
    return d


def _latent_avg(t: torch.Tensor | None, n_latent: int, path: Path, fmt: str) -> torch.Tensor | None:
    if t is None:
        return None
    t = t.detach().float()
    if t.dim() == 2 and t.shape[0] == 1:
        t = t[0]
    if t.dim() == 1:
        t = t.unsqueeze(0).repeat(n_latent, 1)
    if t.dim() != 2 or t.shape[0] != n_latent:
        raise CheckpointError(f"{path}: read as {fmt}, 'latent_avg' has shape {list(t.shape)}; "
                              f"expected [style_dim] or [{n_latent}, style_dim]")
    return t


# ----------------------------------------------------------------------------------------------
# format readers


def _read_project(ckpt: dict, path: Path) -> Bundle:
    fmt = f"the project format (version {ckpt.get('format_version')})"
    if ckpt.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"{path}: project checkpoint format_version {ckpt.get('format_version')!r} "
                              f"is not supported (this software reads {FORMAT_VERSION})")
    for key in ("config", "state_dicts"):
        if not isinstance(ckpt.get(key), dict):
            raise CheckpointError(f"{path}: read as {fmt}, key '{key}' is missing or not a dict")
    cfg, sds = ckpt["config"], ckpt["state_dicts"]
    if set(cfg) != set(sds):
        raise CheckpointError(f"{path}: read as {fmt}, 'config' lists {sorted(cfg)} but "
                              f"'state_dicts' holds {sorted(sds)}")
    stylegan2, psp, simp = _networks()
    b = Bundle(meta=dict(ckpt.get("meta") or {}))
    for name, c in cfg.items():
        c = dict(c)
        cls_name = c.pop("class")
        classes = {"Generator": stylegan2.Generator, "Discriminator": stylegan2.Discriminator,
                   "GradualStyleEncoder": psp.GradualStyleEncoder, "CompactEncoder": psp.CompactEncoder,
                   "SketchSimplifier": simp.SketchSimplifier}
        if cls_name not in classes or name not in ("generator", "encoder", "discriminator", "simplifier"):
            raise CheckpointError(f"{path}: read as {fmt}, unknown component {name!r} of class {cls_name!r}")
        try:
            m = classes[cls_name](**c)
        except TypeError as e:
            raise CheckpointError(f"{path}: read as {fmt}, config of {name!r} does not fit "
                                  f"{cls_name}: {e}") from None
        _load_strict(m, {k: v.float() if v.is_floating_point() else v for k, v in sds[name].items()},
                     path, fmt, name)
        setattr(b, name, m)
    if b.generator is not None:
        b.latent_avg = _latent_avg(ckpt.get("latent_avg"), b.generator.n_latent, path, fmt)
    b.input_size = ckpt.get("input_size")
    if b.encoder is not None and (b.latent_avg is None or b.input_size is None):
        raise CheckpointError(f"{path}: read as {fmt}, an encoder needs 'latent_avg' and 'input_size'")
    return b


def _read_rosinality(ckpt: dict, path: Path) -> Bundle:
    fmt = "a rosinality StyleGAN2 checkpoint"
    cfg = ckpt.get("config") if isinstance(ckpt.get("config"), dict) else None
    g_cfg = cfg.get("generator") if cfg else None
    d_cfg = cfg.get("discriminator") if cfg else None
    g = _generator_from(ckpt["g_ema"], path, fmt, g_cfg, "generator 'g_ema'")
    d = _discriminator_from(ckpt["d"], path, fmt, d_cfg) if isinstance(ckpt.get("d"), dict) else None
    lat = ckpt.get("latent_avg")
    if lat is None:
        # Converted and training checkpoints may lack it: the mean of mapped z is its definition.
        with torch.no_grad():
            lat = g.mean_latent(4096)[0]
    meta = {"step": ckpt.get("step")}
    if isinstance(ckpt.get("args"), argparse.Namespace):
        meta["args"] = {k: v for k, v in vars(ckpt["args"]).items() if isinstance(v, (int, float, str, bool))}
    return Bundle(generator=g, discriminator=d, latent_avg=_latent_avg(lat, g.n_latent, path, fmt), meta=meta)


def _read_psp(ckpt: dict, path: Path) -> Bundle:
    fmt = "a pixel2style2pixel (pSp) checkpoint"
    opts = ckpt.get("opts")
    if not isinstance(opts, dict):
        raise CheckpointError(f"{path}: read as {fmt}, 'opts' must be the dict pSp's Coach saves, "
                              f"got {type(opts).__name__}")
    if opts.get("learn_in_w"):
        raise CheckpointError(f"{path}: read as {fmt}, learn_in_w=True checkpoints are not supported")
    sd = ckpt["state_dict"]
    # training.train_psp writes the pSp layout too, with its small generator's and compact encoder's
    # constructor arguments in opts: official checkpoints have neither key and get the defaults.
    g_config = _opt_dict(opts, "generator_config", path, fmt)
    g = _generator_from(_strip(sd, "decoder"), path, fmt, g_config, "decoder")
    if "output_size" in opts and opts["output_size"] != g.size:
        raise CheckpointError(f"{path}: read as {fmt}, opts.output_size={opts['output_size']} but the "
                              f"decoder weights are for {g.size} px")
    _, psp, _ = _networks()
    e = _psp_encoder(psp, opts, g, path, fmt)
    _load_strict(e, _strip(sd, "encoder"), path, fmt, "encoder")
    lat = ckpt.get("latent_avg")
    if lat is None:
        if opts.get("start_from_latent_avg", True):
            raise CheckpointError(f"{path}: read as {fmt}, start_from_latent_avg is set but 'latent_avg' "
                                  "is missing")
        lat = torch.zeros(g.n_latent, g.style_dim)
    return Bundle(generator=g, encoder=e, latent_avg=_latent_avg(lat, g.n_latent, path, fmt),
                  input_size=int(opts.get("input_size", 256)),
                  meta={"opts": {k: v for k, v in opts.items() if isinstance(v, (int, float, str, bool))}})


def _opt_dict(opts: dict, key: str, path: Path, fmt: str) -> dict | None:
    value = opts.get(key)
    if value is not None and not isinstance(value, dict):
        raise CheckpointError(f"{path}: read as {fmt}, opts.{key} must be a dict of constructor arguments, "
                              f"got {type(value).__name__}")
    return value


def _psp_encoder(psp, opts: dict, g, path: Path, fmt: str):
    enc_type = opts.get("encoder_type", "GradualStyleEncoder")
    if enc_type == "GradualStyleEncoder":
        return psp.GradualStyleEncoder(num_layers=50, mode="ir_se", n_styles=opts.get("n_styles", g.n_latent),
                                       input_nc=opts.get("input_nc", 3))
    if enc_type == "CompactEncoder":
        config = _opt_dict(opts, "encoder_config", path, fmt)
        if config is None:
            raise CheckpointError(f"{path}: read as {fmt}, encoder_type 'CompactEncoder' needs "
                                  "opts.encoder_config (the CompactEncoder arguments training.train_psp saves)")
        try:
            return psp.CompactEncoder(**config)
        except (TypeError, ValueError) as e:
            raise CheckpointError(f"{path}: read as {fmt}, opts.encoder_config does not build a "
                                  f"CompactEncoder: {e}") from None
    raise CheckpointError(f"{path}: read as {fmt}, encoder_type {enc_type!r} is not supported "
                          "(supported: GradualStyleEncoder, CompactEncoder)")


def _read_simplifier(ckpt: dict, path: Path) -> Bundle:
    _, _, simp = _networks()
    s = simp.SketchSimplifier()
    _load_strict(s, ckpt, path, "a sketch-simplification .pth (released model_gan layout)", "network")
    return Bundle(simplifier=s)


def _detect(ckpt: Any) -> tuple[str, Callable[[dict, Path], Bundle]] | None:
    if not isinstance(ckpt, dict):
        return None
    if ckpt.get("format") == FORMAT_NAME:
        return "newsnow", _read_project
    if "state_dict" in ckpt and "opts" in ckpt:
        return "psp", _read_psp
    if "g_ema" in ckpt:
        return "rosinality", _read_rosinality
    if "0.weight" in ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
        return "sketch_simplification", _read_simplifier
    if "style.1.weight" in ckpt and "conv1.conv.weight" in ckpt:
        return "rosinality_generator_state_dict", lambda sd, p: _read_rosinality({"g_ema": sd}, p)
    return None


# ----------------------------------------------------------------------------------------------
# public API


def default_device() -> torch.device:
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def read_checkpoint(path: str | Path) -> Any:
    """torch.load with weights_only=True (plus argparse.Namespace), errors naming the file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise CheckpointError(f"{path}: file is empty (an interrupted copy?)")
    try:
        with torch.serialization.safe_globals([argparse.Namespace]):
            return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises RuntimeError, EOFError, UnpicklingError, zipfile errors ...
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        if "weights_only" in str(e) or "Unsupported global" in str(e):
            hint = ("it holds Python objects other than tensors and plain containers; only weights are "
                    "loaded (weights_only=True) so arbitrary code in a checkpoint can never run")
        else:
            hint = "it is truncated, corrupt, or not a PyTorch checkpoint"
        raise CheckpointError(f"{path}: cannot be read: {hint} ({type(e).__name__}: {msg})") from None


def load(path: str | Path, device: str | torch.device | None = None, fp16: bool | None = None) -> Bundle:
    """Load any supported checkpoint into a Bundle in eval mode, without gradients on the weights.

    fp16 defaults to True on CUDA (inference speed) and is refused on CPU, where half precision is slow
    and inaccurate.
    """
    path = Path(path)
    ckpt = read_checkpoint(path)
    detected = _detect(ckpt)
    if detected is None:
        keys = sorted(ckpt)[:_MAX_LISTED] if isinstance(ckpt, dict) else type(ckpt).__name__
        raise CheckpointError(
            f"{path}: unrecognised checkpoint format. Expected one of: the project format "
            f"(key 'format': '{FORMAT_NAME}'), rosinality StyleGAN2 ('g_ema'), pSp ('state_dict' + 'opts'), "
            f"a sketch-simplification state_dict ('0.weight' ...). Found top-level keys: {keys}")
    fmt_name, reader = detected
    bundle = reader(ckpt, path)
    bundle.meta["format"] = fmt_name
    bundle.meta["path"] = str(path)
    device = torch.device(device) if device is not None else default_device()
    fp16 = (device.type == "cuda") if fp16 is None else fp16
    if fp16 and device.type != "cuda":
        raise ValueError("fp16 inference is only offered on CUDA devices")
    for name in ("generator", "encoder", "discriminator", "simplifier"):
        m = getattr(bundle, name)
        if m is not None:
            m.eval().requires_grad_(False)
    return bundle.to(device, torch.float16 if fp16 else torch.float32)


def _component(module: nn.Module, half: bool) -> tuple[dict, dict]:
    cfg = dict(getattr(module, "config", None) or {})
    if not cfg:
        raise ValueError(f"{type(module).__name__} has no .config; the project format needs it to rebuild")
    cfg["class"] = type(module).__name__
    sd = {k: (v.detach().cpu().half() if half and v.is_floating_point() else v.detach().cpu().clone())
          for k, v in module.state_dict().items()}
    return cfg, sd


def save(path: str | Path, bundle: Bundle | None = None, *, generator: nn.Module | None = None,
         encoder: nn.Module | None = None, latent_avg: torch.Tensor | None = None,
         discriminator: nn.Module | None = None, simplifier: nn.Module | None = None,
         input_size: int | None = None, meta: dict | None = None, half: bool = False) -> Path:
    """Write the project format atomically. `half=True` stores weights as fp16 (half the size of a
    shipped model); load() always restores fp32 on CPU. Without `half`, save/load is bit-exact."""
    if bundle is not None:
        generator = generator or bundle.generator
        encoder = encoder or bundle.encoder
        discriminator = discriminator or bundle.discriminator
        simplifier = simplifier or bundle.simplifier
        latent_avg = latent_avg if latent_avg is not None else bundle.latent_avg
        input_size = input_size or bundle.input_size
        meta = {**{k: v for k, v in bundle.meta.items() if k not in ("path", "format")}, **(meta or {})}
    if encoder is not None and (latent_avg is None or input_size is None or generator is None):
        raise ValueError("saving an encoder needs generator, latent_avg and input_size")
    config, sds = {}, {}
    for name, m in (("generator", generator), ("encoder", encoder), ("discriminator", discriminator),
                    ("simplifier", simplifier)):
        if m is not None:
            config[name], sds[name] = _component(m, half)
    if not config:
        raise ValueError("nothing to save: give at least one network")
    ckpt = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION, "config": config, "state_dicts": sds,
            "latent_avg": None if latent_avg is None else latent_avg.detach().cpu().float().clone(),
            "input_size": input_size, "meta": dict(meta or {})}
    return atomic_torch_save(ckpt, path)
