"""Official MLP-Mixer checkpoints: the ``.npz`` layout, download, timm state dicts.

The released checkpoints (``gs://mixer_models``) are Flax parameter trees flattened with
``/``::

    stem/kernel                                   (P, P, 3, C)  HWIO conv kernel
    MixerBlock_{i}/LayerNorm_0/{scale,bias}       (C,)
    MixerBlock_{i}/token_mixing/Dense_0/kernel    (S, D_S)      Flax Dense is (in, out)
    MixerBlock_{i}/token_mixing/Dense_1/kernel    (D_S, S)
    MixerBlock_{i}/LayerNorm_1/{scale,bias}       (C,)
    MixerBlock_{i}/channel_mixing/Dense_{0,1}/... (C, D_C), (D_C, C)
    pre_head_layer_norm/{scale,bias}              (C,)
    head/{kernel,bias}                            (C, K), (K,)

PyTorch ``nn.Linear`` stores ``(out, in)`` and ``nn.Conv2d`` ``(out, in, kh, kw)``, hence the
transposes below. Loading at a higher resolution widens the token-mixing MLPs with
block-diagonal copies of the checkpoint's weights (paper Appendix C, ``mixer_lib.resolution``).
"""

from __future__ import annotations

import os
import re
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from mixer_lib.download import default_cache_dir, fetch
from mixer_lib.model import VARIANTS, MixerConfig, MlpMixer
from mixer_lib.resolution import widen_token_mixing


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used with the requested model."""


# ----------------------------------------------------------------------------- catalogue

BASE_URL = "https://storage.googleapis.com/mixer_models"


@dataclass(frozen=True)
class CheckpointInfo:
    """One released checkpoint. ``sha256``/``size`` are None where not published."""

    name: str  # e.g. "imagenet21k/Mixer-B_16" (its path in the bucket, without .npz)
    variant: str  # e.g. "Mixer-B/16"
    weights: str  # "imagenet21k", "imagenet1k", "sam" or "gsam"
    num_classes: int
    description: str
    sha256: str | None = None
    size: int | None = None

    @property
    def url(self) -> str:
        return f"{BASE_URL}/{self.name}.npz"

    @property
    def filename(self) -> str:
        return self.name.replace("/", "_") + ".npz"


def _entries() -> dict[str, CheckpointInfo]:
    rows = [
        ("imagenet21k", "Mixer-B/16", 21843, "pre-trained on ImageNet-21k (paper Table 2)"),
        ("imagenet21k", "Mixer-L/16", 21843, "pre-trained on ImageNet-21k (paper Table 2)"),
        ("imagenet1k", "Mixer-B/16", 1000, "pre-trained on ImageNet-1k (paper Table 2)"),
        ("imagenet1k", "Mixer-L/16", 1000, "pre-trained on ImageNet-1k (paper Table 2)"),
        ("sam", "Mixer-B/16", 1000, "ImageNet-1k with SAM (Chen et al., 2021)"),
        ("sam", "Mixer-B/32", 1000, "ImageNet-1k with SAM (Chen et al., 2021)"),
        ("gsam", "Mixer-S/32", 1000, "ImageNet-1k with GSAM (Zhuang et al., 2022)"),
        ("gsam", "Mixer-S/16", 1000, "ImageNet-1k with GSAM (Zhuang et al., 2022)"),
        ("gsam", "Mixer-B/32", 1000, "ImageNet-1k with GSAM (Zhuang et al., 2022)"),
        ("gsam", "Mixer-B/16", 1000, "ImageNet-1k with GSAM (Zhuang et al., 2022)"),
    ]
    out = {}
    for weights, variant, classes, desc in rows:
        name = f"{weights}/{variant.replace('/', '_')}"
        out[name] = CheckpointInfo(name, variant, weights, classes, desc)
    return out


CHECKPOINTS: dict[str, CheckpointInfo] = _entries()
WEIGHTS = sorted({c.weights for c in CHECKPOINTS.values()})


def checkpoint_info(variant: str, weights: str) -> CheckpointInfo:
    """Catalogue entry for ``variant`` pre-trained as ``weights`` (e.g. "imagenet21k")."""
    name = f"{weights}/{variant.replace('/', '_')}"
    if name not in CHECKPOINTS:
        have = ", ".join(f"{c.variant} ({c.weights})" for c in CHECKPOINTS.values())
        raise CheckpointError(
            f"no released checkpoint for {variant} with weights={weights!r}. "
            f"Released: {have}. For other variants use weights='random' or a local .npz path."
        )
    return CHECKPOINTS[name]


def download(
    name: str,
    cache_dir: str | os.PathLike | None = None,
    *,
    url: str | None = None,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Download a catalogue checkpoint (or ``url``) into the cache and return its path
    (:func:`mixer_lib.download.fetch`: resumable, atomic, verified, one process per file)."""
    info = CHECKPOINTS.get(name)
    if info is None and url is None:
        raise CheckpointError(
            f"unknown checkpoint {name!r}; known: {', '.join(CHECKPOINTS)} "
            "(or pass url=...)"
        )
    url = url or info.url
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache / (info.filename if info else Path(urllib.request.url2pathname(
        url.rsplit("/", 1)[-1])).name)
    return fetch(url, target, sha256=sha256 or (info.sha256 if info else None),
                 expected_size=info.size if info else None, progress=progress,
                 timeout=timeout)


# ----------------------------------------------------------------------------- npz layout


def _npz_key_map(cfg: MixerConfig) -> dict[str, tuple[str, str]]:
    """Official key -> (our state-dict key, kind) where kind says how to transpose."""
    keys = {"stem/kernel": ("stem.weight", "conv"), "stem/bias": ("stem.bias", "vec")}
    for i in range(cfg.num_blocks):
        ours, theirs = f"blocks.{i}", f"MixerBlock_{i}"
        for n in (1, 2):
            keys[f"{theirs}/LayerNorm_{n - 1}/scale"] = (f"{ours}.norm{n}.weight", "vec")
            keys[f"{theirs}/LayerNorm_{n - 1}/bias"] = (f"{ours}.norm{n}.bias", "vec")
        for flax_mlp, torch_mlp in (("token_mixing", "mlp_tokens"),
                                    ("channel_mixing", "mlp_channels")):
            for d in (0, 1):
                keys[f"{theirs}/{flax_mlp}/Dense_{d}/kernel"] = (
                    f"{ours}.{torch_mlp}.fc{d + 1}.weight", "dense")
                keys[f"{theirs}/{flax_mlp}/Dense_{d}/bias"] = (
                    f"{ours}.{torch_mlp}.fc{d + 1}.bias", "vec")
    keys["pre_head_layer_norm/scale"] = ("norm.weight", "vec")
    keys["pre_head_layer_norm/bias"] = ("norm.bias", "vec")
    if cfg.num_classes:
        keys["head/kernel"] = ("head.weight", "dense")
        keys["head/bias"] = ("head.bias", "vec")
    return keys


def _to_torch(array: np.ndarray, kind: str) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))
    if kind == "conv":
        return t.permute(3, 2, 0, 1).contiguous()  # HWIO -> OIHW
    if kind == "dense":
        return t.t().contiguous()  # (in, out) -> (out, in)
    return t


def _to_numpy(tensor: torch.Tensor, kind: str) -> np.ndarray:
    t = tensor.detach().float().cpu()
    if kind == "conv":
        t = t.permute(2, 3, 1, 0)  # OIHW -> HWIO
    elif kind == "dense":
        t = t.t()
    return np.ascontiguousarray(t.numpy())


def read_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` checkpoint, with a clear error for a bad file.

    A leading ``params/`` (as big_vision writes) is stripped.
    """
    path = Path(path)
    if not path.exists():
        raise CheckpointError(
            f"checkpoint {path} does not exist. Download a released one with "
            f"mixer_lib.checkpoints.download(name) (names: {', '.join(CHECKPOINTS)})."
        )
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, EOFError, ValueError, OSError, zipfile.LargeZipFile) as err:
        raise CheckpointError(
            f"{path} is not a readable .npz checkpoint ({type(err).__name__}: {err}). The file "
            f"is truncated or corrupt, e.g. from an interrupted download: delete it and "
            f"download it again."
        ) from err
    return {re.sub(r"^params/", "", k): v for k, v in arrays.items()}


def config_from_shapes(patch: int, in_chans: int, hidden: int, num_blocks: int,
                       num_tokens: int, tokens_mlp_dim: int, channels_mlp_dim: int,
                       num_classes: int) -> MixerConfig:
    """The config with these shapes, named after its Table 1 variant where one fits."""
    grid = int(round(num_tokens**0.5))
    dims = (patch, num_blocks, hidden, tokens_mlp_dim, channels_mlp_dim)
    name = next((v.name for v in VARIANTS.values()
                 if (v.patch_size, v.num_blocks, v.hidden_dim, v.tokens_mlp_dim,
                     v.channels_mlp_dim) == dims), f"Mixer-custom/{patch}")
    return MixerConfig(name, patch, num_blocks, hidden, tokens_mlp_dim, channels_mlp_dim,
                       img_size=grid * patch, in_chans=in_chans, num_classes=num_classes)


def config_from_npz(arrays: dict[str, np.ndarray]) -> MixerConfig:
    """The Mixer config a checkpoint's arrays describe (names a Table 1 variant if one fits)."""
    try:
        p, _, in_chans, hidden = arrays["stem/kernel"].shape
        num_tokens, d_s = arrays["MixerBlock_0/token_mixing/Dense_0/kernel"].shape
        d_c = arrays["MixerBlock_0/channel_mixing/Dense_0/kernel"].shape[1]
    except (KeyError, ValueError) as err:
        raise CheckpointError(
            f"not an MLP-Mixer checkpoint in the official layout (missing or malformed {err}); "
            f"keys found: {', '.join(sorted(arrays)[:8])}..."
        ) from err
    n_blocks = len({k.split("/")[0] for k in arrays if k.startswith("MixerBlock_")})
    classes = arrays["head/kernel"].shape[1] if "head/kernel" in arrays else 0
    return config_from_shapes(p, in_chans, hidden, n_blocks, num_tokens, d_s, d_c, classes)


def _describe(cfg: MixerConfig) -> str:
    return (f"{cfg.name} ({cfg.num_blocks} blocks, C={cfg.hidden_dim}, D_S={cfg.tokens_mlp_dim}, "
            f"D_C={cfg.channels_mlp_dim}, patch {cfg.patch_size}, {cfg.num_patches} tokens)")


def _variant_mismatch(source: str, ckpt: MixerConfig, cfg: MixerConfig) -> CheckpointError:
    return CheckpointError(
        f"checkpoint {source} is {_describe(ckpt)}, but the model is {_describe(cfg)}. "
        f"Create the matching model, e.g. create_model({ckpt.name!r}, ...)."
    )


@dataclass
class LoadReport:
    """What ``load_npz``/``load_timm_state_dict`` did to each parameter."""

    source: str
    loaded: list[str] = field(default_factory=list)
    reinitialised: dict[str, str] = field(default_factory=dict)  # key -> why
    resized: dict[str, str] = field(default_factory=dict)  # key -> how

    def __str__(self) -> str:
        lines = [f"loaded {len(self.loaded)} tensors from {self.source}"]
        lines += [f"  re-initialised {k}: {why}" for k, why in self.reinitialised.items()]
        lines += [f"  resized {k}: {how}" for k, how in self.resized.items()]
        return "\n".join(lines)


def load_state(model: MlpMixer, weights: dict[str, torch.Tensor], ckpt: MixerConfig,
               source: str) -> LoadReport:
    """Copy ``weights`` (our key names) from a checkpoint described by ``ckpt`` into ``model``.

    Checks the architecture, re-initialises the head when the class count differs, and
    widens token mixing for a larger grid. Returns what was done.
    """
    cfg = model.cfg
    report = LoadReport(source)
    arch = ("patch_size", "num_blocks", "hidden_dim", "channels_mlp_dim", "in_chans")
    if any(getattr(cfg, a) != getattr(ckpt, a) for a in arch):
        raise _variant_mismatch(source, ckpt, cfg)
    if cfg.num_patches != ckpt.num_patches:
        try:
            key, what = widen_token_mixing(weights, cfg, ckpt)
        except ValueError as err:
            raise CheckpointError(str(err)) from err
        report.resized[key] = what
    elif cfg.tokens_mlp_dim != ckpt.tokens_mlp_dim:
        raise _variant_mismatch(source, ckpt, cfg)
    if "head.weight" in weights and (not cfg.num_classes or
                                     weights["head.weight"].shape[0] != cfg.num_classes):
        why = (f"checkpoint head has {weights['head.weight'].shape[0]} classes, model has "
               f"{cfg.num_classes}; new head is zero-initialised")
        del weights["head.weight"], weights["head.bias"]
        if cfg.num_classes:
            model.reset_classifier(cfg.num_classes)
            report.reinitialised["head.weight"] = why
            report.reinitialised["head.bias"] = why
    elif "head.weight" not in weights and cfg.num_classes:
        model.reset_classifier(cfg.num_classes)
        for k in ("head.weight", "head.bias"):
            report.reinitialised[k] = "checkpoint has no head; new head is zero-initialised"
    own = model.state_dict()
    expected = set(own) - set(report.reinitialised)
    missing, unexpected = expected - set(weights), set(weights) - set(own)
    if missing or unexpected:
        raise CheckpointError(
            f"checkpoint {source} does not fit {_describe(cfg)}: missing "
            f"{sorted(missing)[:6]}{'...' if len(missing) > 6 else ''}, unexpected "
            f"{sorted(unexpected)[:6]}{'...' if len(unexpected) > 6 else ''}. Is it a Mixer "
            f"checkpoint in the official layout?"
        )
    for key, value in weights.items():
        if own[key].shape != value.shape:
            raise CheckpointError(
                f"checkpoint {source}: {key} has shape {tuple(value.shape)}, the model "
                f"expects {tuple(own[key].shape)} ({_describe(cfg)})."
            )
    with torch.no_grad():
        for key, value in weights.items():
            own[key].copy_(value)
            report.loaded.append(key)
    return report


def load_npz(model: MlpMixer, path: str | os.PathLike) -> LoadReport:
    """Load an official ``.npz`` checkpoint into ``model`` (in place) and report what happened.

    * a checkpoint of another variant, a truncated file or unknown/missing keys raise
      :class:`CheckpointError` naming the problem;
    * a different class count keeps everything but the head, which is zero-initialised
      (fine-tuning, paper Section 3.1);
    * a larger image size whose patch grid is a whole multiple of the checkpoint's gets
      block-diagonal token-mixing weights (paper Appendix C), into a model built K^2 times
      as wide in D_S (:func:`mixer_lib.pretrained` builds it so; the model is never changed
      here).
    """
    weights, ckpt = npz_weights(path)
    return load_state(model, weights, ckpt, str(path))


def npz_weights(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], MixerConfig]:
    """An official ``.npz`` file as our parameter names and the config it describes."""
    arrays = read_npz(path)
    ckpt = config_from_npz(arrays)
    key_map = _npz_key_map(ckpt)
    unknown = sorted(set(arrays) - set(key_map))
    missing = sorted(k for k in key_map if k not in arrays)
    if unknown or missing:
        raise CheckpointError(
            f"{path} is not in the official Mixer layout: unknown keys {unknown[:6]}, missing "
            f"keys {missing[:6]}. Expected keys like 'stem/kernel', "
            f"'MixerBlock_0/token_mixing/Dense_0/kernel', 'pre_head_layer_norm/scale'."
        )
    return {ours: _to_torch(arrays[k], kind) for k, (ours, kind) in key_map.items()}, ckpt


def save_npz(model: MlpMixer, path: str | os.PathLike) -> Path:
    """Write ``model`` in the official ``.npz`` layout (atomically: temp file + rename)."""
    path = Path(path)
    state = model.state_dict()
    arrays = {k: _to_numpy(state[ours], kind) for k, (ours, kind) in
              _npz_key_map(model.cfg).items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz.tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


# ----------------------------------------------------------------------------- timm


def timm_config(state_dict: dict[str, torch.Tensor]) -> MixerConfig:
    """The config a timm ``MlpMixer`` state dict describes."""
    try:
        conv = state_dict["stem.proj.weight"]
        fc_t = state_dict["blocks.0.mlp_tokens.fc1.weight"]
        fc_c = state_dict["blocks.0.mlp_channels.fc1.weight"]
    except KeyError as err:
        raise CheckpointError(
            f"not a timm MlpMixer state dict (no {err}); keys found: "
            f"{', '.join(list(state_dict)[:6])}..."
        ) from err
    hidden, in_chans, p, _ = conv.shape
    n_blocks = len({k.split(".")[1] for k in state_dict if k.startswith("blocks.")})
    classes = state_dict["head.weight"].shape[0] if "head.weight" in state_dict else 0
    return config_from_shapes(p, in_chans, hidden, n_blocks, fc_t.shape[1], fc_t.shape[0],
                              fc_c.shape[0], classes)


def load_timm_state_dict(model: MlpMixer, state_dict: dict[str, torch.Tensor] | nn.Module,
                         source: str = "timm state dict") -> LoadReport:
    """Load a timm ``MlpMixer`` (or its ``state_dict()``) into ``model``.

    timm's names match ours except the stem (``stem.proj.*`` -> ``stem.*``). Note timm uses
    exact GELU: build the model with ``gelu="exact"`` to reproduce timm's outputs.
    """
    return load_state(model, *timm_weights(state_dict), source)


def timm_weights(state_dict: dict[str, torch.Tensor] | nn.Module,
                 ) -> tuple[dict[str, torch.Tensor], MixerConfig]:
    """A timm ``MlpMixer`` state dict as our parameter names and the config it describes."""
    if isinstance(state_dict, nn.Module):
        state_dict = state_dict.state_dict()
    ckpt = timm_config(state_dict)
    return {re.sub(r"^stem\.proj\.", "stem.", k): v.detach().float().clone()
            for k, v in state_dict.items()}, ckpt
