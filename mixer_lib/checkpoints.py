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
block-diagonal copies of the checkpoint's weights (paper Appendix C).
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import tempfile
import urllib.error
import urllib.request
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from mixer_lib.filelock import exclusive
from mixer_lib.model import VARIANTS, MixerConfig, MlpMixer


class CheckpointError(ValueError):
    """A checkpoint file that cannot be used with the requested model."""


class CheckpointDownloadError(RuntimeError):
    """A checkpoint that could not be downloaded."""


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


def default_cache_dir() -> Path:
    """``$MIXER_CACHE_DIR``, else ``$XDG_CACHE_HOME/mixer_lib``, else ``~/.cache/mixer_lib``."""
    if os.environ.get("MIXER_CACHE_DIR"):
        return Path(os.environ["MIXER_CACHE_DIR"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "mixer_lib"


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def download(
    name: str,
    cache_dir: str | os.PathLike | None = None,
    *,
    url: str | None = None,
    sha256: str | None = None,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Download a catalogue checkpoint (or ``url``) into the cache and return its path.

    Resumes a partial ``.part`` file with an HTTP Range request, writes atomically (the final
    name appears only once the file is complete and verified) and checks size and sha256
    where known. A file already in the cache is verified and reused.
    """
    info = CHECKPOINTS.get(name)
    if info is None and url is None:
        raise CheckpointError(
            f"unknown checkpoint {name!r}; known: {', '.join(CHECKPOINTS)} "
            "(or pass url=...)"
        )
    url = url or info.url
    sha256 = sha256 or (info.sha256 if info else None)
    expected_size = info.size if info else None
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    target = cache / (info.filename if info else Path(urllib.request.url2pathname(
        url.rsplit("/", 1)[-1])).name)
    if target.exists():
        _verify_download(target, sha256, expected_size, url)
        return target
    # One process downloads, the others wait and then reuse its file: torchrun's ranks, or
    # separate runs sharing the cache. Under the lock the .part file is only this process's,
    # so a download killed earlier is resumed, never written by two processes at once.
    with exclusive(target.with_name(f".{target.name}.lock"),
                   f"downloading {target.name}") as locked:
        if target.exists():  # another process finished it while this one waited
            _verify_download(target, sha256, expected_size, url)
            return target
        # without a lock (a file system that has none) each process writes a file of its
        # own; the first complete, verified copy is renamed into place, the others too (the
        # same bytes), so no reader ever sees a partial file
        part = target.with_name(target.name + ".part" if locked else
                                f".{target.name}.{os.getpid()}-{os.urandom(4).hex()}.part")
        _fetch(url, target, part, sha256, expected_size, timeout, progress)
    return target


def _fetch(url: str, target: Path, part: Path, sha256: str | None, expected_size: int | None,
           timeout: float, progress: bool) -> None:
    """Download ``url`` to ``target`` through ``part`` (resumed with a Range request when it
    holds the start of an earlier attempt), verify, and rename atomically."""
    cache = target.parent
    cache.mkdir(parents=True, exist_ok=True)
    done = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as err:
        if err.code == 416 and done:  # the .part file is already complete
            response = None
        else:
            raise _offline_error(url, target, err) from err
    except (urllib.error.URLError, OSError) as err:
        raise _offline_error(url, target, err) from err
    if response is not None:
        with response:
            if done and response.status != 206:  # server ignored Range: start over
                done = 0
            length = response.headers.get("Content-Length")
            total = done + int(length) if length is not None else None
            mode = "ab" if done else "wb"
            with open(part, mode) as f, tqdm(
                total=total, initial=done, unit="B", unit_scale=True, unit_divisor=1024,
                desc=f"download {target.name}", disable=not progress, file=sys.stderr,
            ) as bar:
                while block := response.read(1 << 20):
                    f.write(block)
                    bar.update(len(block))
            if total is not None and part.stat().st_size != total:
                raise CheckpointDownloadError(
                    f"download of {url} stopped at {part.stat().st_size} of {total} bytes; "
                    f"call download() again to resume from {part}."
                )
    _verify_download(part, sha256, expected_size, url)
    with open(part, "rb") as f:
        os.fsync(f.fileno())
    os.replace(part, target)


def _verify_download(path: Path, sha256: str | None, size: int | None, url: str) -> None:
    if size is not None and path.stat().st_size != size:
        raise CheckpointDownloadError(
            f"{path} has {path.stat().st_size} bytes, expected {size}: delete it and "
            f"download {url} again."
        )
    if sha256 is not None and sha256_file(path) != sha256:
        raise CheckpointDownloadError(
            f"{path} does not match its sha256 checksum {sha256}: the file is corrupt or "
            f"not the released one; delete it and download {url} again."
        )


def _offline_error(url: str, target: Path, err: Exception) -> CheckpointDownloadError:
    if not url.endswith(".npz"):
        return CheckpointDownloadError(
            f"could not download {url} ({err}). If this machine is offline, fetch the file "
            f"elsewhere and put it at {target}.")
    return CheckpointDownloadError(
        f"could not download {url} ({err}). If this machine is offline, fetch the file "
        f"elsewhere (e.g. `gsutil cp {url.replace('https://storage.googleapis.com/', 'gs://')} "
        f".` or a browser) and put it at {target} (set MIXER_CACHE_DIR to use another cache "
        f"folder), or pass the local .npz path instead of the checkpoint name."
    )


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


def block_diagonal(weight: torch.Tensor, copies: int) -> torch.Tensor:
    """``diag(W, ..., W)`` with ``copies`` copies: (out, in) -> (copies*out, copies*in)."""
    return torch.block_diag(*([weight] * copies))


def tile_token_order(grid: int, factor: int) -> torch.Tensor:
    """Permutation from tile-major token order to the row-major order of a bigger grid.

    The high-resolution grid of ``(factor*grid)^2`` patches is cut into ``factor^2`` tiles of
    ``grid x grid`` patches; tile-major order lists tile 0's patches (row-major inside the
    tile), then tile 1's, and so on. Returns ``idx`` with ``row_major[idx] = tile_major``.
    """
    big = grid * factor
    rows = torch.arange(big).view(factor, grid, 1, 1)
    cols = torch.arange(big).view(1, 1, factor, grid)
    # tile (ti, tj), in-tile (r, c) -> row-major index (ti*grid + r) * big + tj*grid + c
    index = rows * big + cols  # (ti, r, tj, c)
    return index.permute(0, 2, 1, 3).reshape(-1)  # (ti, tj, r, c) = tile-major


def _widen_token_mixing(weights: dict[str, torch.Tensor], cfg: MixerConfig,
                        ckpt: MixerConfig, report: LoadReport) -> None:
    """Paper Appendix C: map token-mixing weights of a ``g x g`` grid to a ``Kg x Kg`` grid.

    The new grid is split into K^2 tiles of ``g x g`` patches (each tile is laid out exactly
    like the pre-training grid) and the token-mixing MLP starts as K^2 independent copies of
    the pre-trained one, one per tile: W1' = P^T diag(W1, ..., W1), W2' = diag(W2, ...) P,
    with hidden width K^2 D_S. Everything else in Mixer acts per token, so a model initialised
    this way maps an image made of K x K copies of a low-resolution image to the same
    features as the low-resolution model on that image.
    """
    g, big = ckpt.grid_size, cfg.grid_size
    if big % g or cfg.patch_size != ckpt.patch_size:
        raise CheckpointError(
            f"cannot map the checkpoint's {g}x{g} patch grid ({ckpt.img_size} px, patch "
            f"{ckpt.patch_size}) to the model's {big}x{big} grid ({cfg.img_size} px): the "
            f"block-diagonal initialisation (paper App. C) needs the grid to grow by a whole "
            f"factor. Use img_size = {ckpt.img_size} x k, e.g. {ckpt.img_size * 2}."
        )
    k2 = (big // g) ** 2
    if cfg.tokens_mlp_dim != k2 * ckpt.tokens_mlp_dim:
        raise CheckpointError(
            f"the model's token-mixing width D_S={cfg.tokens_mlp_dim} must be {k2} x "
            f"{ckpt.tokens_mlp_dim} = {k2 * ckpt.tokens_mlp_dim} for a {big}x{big} grid "
            f"initialised from a {g}x{g} checkpoint (paper App. C). Build the model with "
            f"mixer_lib.pretrained(variant, weights, img_size={cfg.img_size}), which makes "
            f"it that wide, or create_model(..., tokens_mlp_dim={k2 * ckpt.tokens_mlp_dim})."
        )
    order = tile_token_order(g, big // g)
    inverse = torch.argsort(order)
    for i in range(cfg.num_blocks):
        pre = f"blocks.{i}.mlp_tokens"
        w1 = block_diagonal(weights[f"{pre}.fc1.weight"], k2)  # acts on tile-major tokens
        weights[f"{pre}.fc1.weight"] = w1[:, inverse]  # accept row-major tokens
        weights[f"{pre}.fc1.bias"] = weights[f"{pre}.fc1.bias"].repeat(k2)
        w2 = block_diagonal(weights[f"{pre}.fc2.weight"], k2)
        weights[f"{pre}.fc2.weight"] = w2[inverse, :]  # emit row-major tokens
        weights[f"{pre}.fc2.bias"] = weights[f"{pre}.fc2.bias"].repeat(k2)[inverse]
    report.resized["blocks.*.mlp_tokens"] = (
        f"{g}x{g} -> {big}x{big} patch grid: {k2} block-diagonal copies, D_S "
        f"{ckpt.tokens_mlp_dim} -> {cfg.tokens_mlp_dim} (paper App. C)"
    )


def widened_config(cfg: MixerConfig, ckpt: MixerConfig) -> MixerConfig:
    """``cfg`` with the token-mixing width its weights from ``ckpt`` need: at the checkpoint's
    own grid, the checkpoint's D_S where that is a square multiple of ``cfg``'s (a model
    widened earlier, e.g. fine-tuned at 448 px); on a grid K times as large per side, K^2
    times the checkpoint's D_S (paper Appendix C: K^2 block-diagonal copies). Anything else
    is left as it is (loading then names the mismatch)."""
    if cfg.patch_size != ckpt.patch_size:
        return cfg
    if cfg.grid_size == ckpt.grid_size:
        k2, rest = divmod(ckpt.tokens_mlp_dim, cfg.tokens_mlp_dim)
        if rest == 0 and round(k2**0.5) ** 2 == k2:
            return replace(cfg, tokens_mlp_dim=ckpt.tokens_mlp_dim)
        return cfg
    if cfg.grid_size > ckpt.grid_size and cfg.grid_size % ckpt.grid_size == 0:
        k2 = (cfg.grid_size // ckpt.grid_size) ** 2
        return replace(cfg, tokens_mlp_dim=k2 * ckpt.tokens_mlp_dim)
    return cfg


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
        _widen_token_mixing(weights, cfg, ckpt, report)
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
