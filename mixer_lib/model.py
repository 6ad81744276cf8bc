"""MLP-Mixer (Tolstikhin et al., 2021, arXiv 2105.01601), Section 2 and Figure 1.

Written to match the official Flax code (``vit_jax/models_mixer.py``) rather than common
PyTorch habits:

* the stem is the official strided convolution's parameters (kernel = stride = patch size),
  computed as the paper describes it, "per-patch fully connected": one matrix product over
  the flattened patches (:class:`PatchStem`);
* every block is pre-norm: ``x + TokenMLP(LN(x))^T`` then ``x + ChannelMLP(LN(x))`` (Eq. 1);
* LayerNorm epsilon is 1e-6 (Flax's default, PyTorch's is 1e-5);
* GELU uses the tanh approximation (``flax.linen.gelu`` default); ``gelu="exact"`` gives the
  erf form that timm uses;
* the head is zero-initialised, other Dense/Conv kernels use Flax's ``lecun_normal``
  (truncated normal, variance 1/fan_in) and zero biases.

At inference on a GPU, two fused paths compute the same function as the layers the tests
compare them with: in bf16 or fp16 each block's token-mixing half runs as one Triton kernel
(:mod:`mixer_lib.token_kernel`, against :class:`TokenMixingMlp`), without storing the hidden
activations; and the channel MLP's first dense layer takes its bias and tanh GELU in one
cuBLASLt call (:mod:`mixer_lib.dense_gelu`, against ``fc1`` then GELU).

Shapes: images ``(B, 3, H, W)`` -> patches ``(B, S, C)`` with ``S = (H/P)(W/P)`` tokens of
``C`` channels -> logits ``(B, num_classes)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Literal

import torch
import torch.nn.functional as F
from einops import rearrange
from einops.layers.torch import Reduce
from torch import nn
from torch.utils.checkpoint import checkpoint

from mixer_lib import dense_gelu, token_kernel

GeluKind = Literal["tanh", "exact"]
# How the model computes (recorded with every run): the stem as one product over the flattened
# patches, the residual stream as a contiguous (B, S, C) tensor, token mixing by TokenDense;
# at inference the LayerNorms in autocast's compute dtype, and on a GPU each block's token
# mixing in one kernel (mixer_lib.token_kernel; its TMA form on sm_90 and later) and, without
# autocast, the channel MLP's first dense layer with its bias and GELU in one cuBLASLt call
# (mixer_lib.dense_gelu). Earlier forms: mixer_lib.throughputs.
MODEL_FORM = "gemm-stem-tma"


@dataclass(frozen=True)
class MixerConfig:
    """Everything that defines a Mixer architecture (paper Table 1 plus run options)."""

    name: str
    patch_size: int  # P
    num_blocks: int  # number of Mixer layers
    hidden_dim: int  # C, channels per token
    tokens_mlp_dim: int  # D_S, token-mixing MLP width
    channels_mlp_dim: int  # D_C, channel-mixing MLP width
    img_size: int = 224
    in_chans: int = 3
    num_classes: int = 1000
    gelu: GeluKind = "tanh"
    drop_rate: float = 0.0  # dropout inside MLPs and before the head
    drop_path_rate: float = 0.0  # stochastic depth, linearly increasing over blocks
    grad_checkpointing: bool = False  # recompute blocks in backward to save memory
    # inference on a GPU: each block's token mixing in one Triton kernel where it applies
    # (mixer_lib.token_kernel); training always takes TokenMixingMlp
    fused_token_mixing: bool = True
    # that kernel's form: "tma" (tiles moved by TMA on sm_90 and later, elsewhere the
    # pointer form) or "pointers" (any GPU); "tma" since the H200 records of 2f7240f
    # supported it (python -m mixer_lib.fused_paths)
    token_kernel_form: str = "tma"
    # inference on a GPU without autocast (weights in the compute dtype): the channel MLP's
    # first dense layer, bias and tanh GELU in one cuBLASLt call (mixer_lib.dense_gelu);
    # otherwise fc1 then GELU
    fused_dense_gelu: bool = True

    def __post_init__(self) -> None:
        if self.gelu not in ("tanh", "exact"):
            raise ValueError(f"gelu must be 'tanh' (official) or 'exact', got {self.gelu!r}")
        if self.img_size % self.patch_size:
            raise ValueError(
                f"{self.name}: img_size {self.img_size} is not a multiple of the patch size "
                f"{self.patch_size}; use a resolution divisible by {self.patch_size} "
                f"(e.g. {self.patch_size * (self.img_size // self.patch_size)})."
            )
        token_kernel.check_form(self.token_kernel_form)
        for field in ("drop_rate", "drop_path_rate"):
            value = getattr(self, field)
            if not 0.0 <= value < 1.0:
                raise ValueError(f"{field} must be in [0, 1), got {value}")

    @property
    def grid_size(self) -> int:
        """Patches per side, H/P."""
        return self.img_size // self.patch_size

    @property
    def num_patches(self) -> int:
        """S, the number of tokens."""
        return self.grid_size**2


# Paper Table 1. "Mixer-B/16": B = size, 16 = patch resolution.
VARIANTS: dict[str, MixerConfig] = {
    cfg.name: cfg
    for cfg in (
        MixerConfig("Mixer-S/32", 32, 8, 512, 256, 2048),
        MixerConfig("Mixer-S/16", 16, 8, 512, 256, 2048),
        MixerConfig("Mixer-B/32", 32, 12, 768, 384, 3072),
        MixerConfig("Mixer-B/16", 16, 12, 768, 384, 3072),
        MixerConfig("Mixer-L/32", 32, 24, 1024, 512, 4096),
        MixerConfig("Mixer-L/16", 16, 24, 1024, 512, 4096),
        MixerConfig("Mixer-H/14", 14, 32, 1280, 640, 5120),
    )
}


# Small variants for CPU experiments; not in the paper.
EXTRA_VARIANTS: dict[str, MixerConfig] = {
    "Mixer-T/4": MixerConfig("Mixer-T/4", 4, 4, 128, 64, 512, img_size=32),
    # the scale study's model sizes (E8): Mixer-T/4 at half and 1.5x the width, MLP widths
    # scaled with it (D_S = C/2, D_C = 4C as in Table 1)
    "Mixer-W64/4": MixerConfig("Mixer-W64/4", 4, 4, 64, 32, 256, img_size=32),
    "Mixer-W192/4": MixerConfig("Mixer-W192/4", 4, 4, 192, 96, 768, img_size=32),
}


def get_config(variant: str, **overrides: object) -> MixerConfig:
    """Table 1 config for ``variant`` (e.g. ``"Mixer-B/16"``) with fields overridden."""
    if isinstance(variant, MixerConfig):
        return replace(variant, **overrides)
    key = variant if variant.startswith("Mixer-") else f"Mixer-{variant}"
    key = key.replace("_", "/")
    known = VARIANTS | EXTRA_VARIANTS
    if key not in known:
        raise ValueError(
            f"unknown Mixer variant {variant!r}; choose one of {', '.join(known)}"
        )
    unknown = set(overrides) - set(MixerConfig.__dataclass_fields__)
    if unknown:
        raise TypeError(f"unknown MixerConfig option(s): {', '.join(sorted(unknown))}")
    return replace(known[key], **overrides)


def lecun_normal_(tensor: torch.Tensor, fan_in: int) -> torch.Tensor:
    """Flax ``lecun_normal``: truncated normal in [-2, 2] std with variance 1/fan_in."""
    # std of a unit normal truncated to [-2, 2] is 0.8796...; divide it out as Flax does.
    std = math.sqrt(1.0 / fan_in) / 0.87962566103423978
    return nn.init.trunc_normal_(tensor, std=std, a=-2 * std, b=2 * std)


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` over the last axis that keeps autocast's compute dtype at inference.

    On CUDA autocast runs LayerNorm in float32: it casts a bf16 stream up (a copy),
    normalises, and hands float32 on, which the next product casts down again (another copy)
    (on a CPU autocast keeps LayerNorm in bf16 with float32 scale and bias). Under autocast
    to bf16 or fp16, with the stream already in that dtype and no gradient wanted, this
    normalises the stream in its own dtype instead (the kernel accumulates the statistics in
    float32 and rounds once, at the output; the scale and bias are rounded to the dtype), the
    dtype the next product reads anyway. Otherwise, training included, it is ``nn.LayerNorm``
    under autocast's rules. ``(..., C) -> (..., C)``.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        dtype = token_kernel.autocast_dtype(x)
        if dtype not in (torch.bfloat16, torch.float16) or x.dtype != dtype or \
                token_kernel.grad_wanted(x, *self.parameters()):
            return super().forward(x)
        with torch.autocast(x.device.type, enabled=False):
            return F.layer_norm(x, self.normalized_shape, self.weight.to(dtype),
                                self.bias.to(dtype), self.eps)


class DropPath(nn.Module):
    """Stochastic depth: drop a whole residual branch per sample (Huang et al., 2016)."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"p={self.p}"


class MlpBlock(nn.Module):
    """Dense -> GELU -> Dense on the last axis (paper Eq. 1, ``MlpBlock`` in Flax).

    ``(..., dim) -> (..., dim)`` with hidden width ``mlp_dim``.
    """

    def __init__(self, dim: int, mlp_dim: int, gelu: GeluKind = "tanh", drop: float = 0.0,
                 fused_dense_gelu: bool = False):
        super().__init__()
        self.fc1 = nn.Linear(dim, mlp_dim)
        self.act = nn.GELU(approximate="tanh" if gelu == "tanh" else "none")
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(mlp_dim, dim)
        self.drop2 = nn.Dropout(drop)
        self.fused_dense_gelu = fused_dense_gelu  # where it applies (mixer_lib.dense_gelu)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if dense_gelu.applies(self, x):  # inference on a GPU: one cuBLASLt call, same function
            h = dense_gelu.dense_gelu(self.fc1, x)
        else:
            h = self.act(self.fc1(x))
        return self.drop2(self.fc2(self.drop1(h)))


class TokenDense(torch.autograd.Function):
    """A dense layer over the token axis of a ``(B, S, C)`` tensor: ``W @ x[b] + bias`` for
    every sample, ``x (B, S_in, C)``, ``W (S_out, S_in)``, ``bias (S_out,)`` -> ``(B, S_out,
    C)``.

    No transposes: each sample's ``(S_in, C)`` block is a contiguous matrix, multiplied from
    the left by ``W`` read through a stride-0 view (no copy per sample). Saved for backward:
    ``x`` and ``W`` only. The weight gradient sums the per-sample products ``g[b] @ x[b]^T``
    (``(B, S_out, S_in)``, the smallest tensor of the three shapes for the paper's variants).
    """

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        return torch.baddbmm(bias[None, :, None], weight.expand(x.shape[0], -1, -1), x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.bmm(weight.t().expand(grad.shape[0], -1, -1), grad)
        if ctx.needs_input_grad[1]:
            grad_w = torch.bmm(grad, x.transpose(1, 2)).sum(0)
        if ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, 2))
        return grad_x, grad_w, grad_b


class TokenMixingMlp(MlpBlock):
    """The token-mixing MLP: an ``MlpBlock`` over the token axis S, shared across channels.

    ``(B, S, C) -> (B, S, C)``. Parameters are those of ``MlpBlock(S, D_S)``. The paper writes
    it with transposes, ``MLP(X^T)^T``; here each dense layer multiplies from the left
    (:class:`TokenDense`), the same arithmetic on the ``(B, S, C)`` layout the residual stream
    keeps, so nothing is transposed or copied per sample. Under autocast the inputs are cast
    once here (the weights once per step, not once per sample).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w1, b1, w2, b2 = self.fc1.weight, self.fc1.bias, self.fc2.weight, self.fc2.bias
        dtype = token_kernel.autocast_dtype(x)
        if dtype is not None:
            x, w1, b1, w2, b2 = (t.to(dtype) for t in (x, w1, b1, w2, b2))
        h = self.drop1(self.act(TokenDense.apply(x, w1, b1)))  # (B, D_S, C)
        return self.drop2(TokenDense.apply(h, w2, b2))


class PatchStem(nn.Conv2d):
    """The per-patch fully connected layer (paper Sec. 2): images ``(B, in_chans, H, W)`` ->
    tokens ``(B, S, C)``, contiguous, patches in row-major order (the official reshape's).

    Its parameters are the official stem's, a convolution with kernel = stride = P (``weight
    (C, in_chans, P, P)``, ``bias (C,)``; checkpoints load into it as into ``nn.Conv2d``). It
    computes as the paper describes it: the patches rearranged into a ``(B, S, in_chans·P·P)``
    matrix, in the kernel's ``(c, p, q)`` order, times the kernel as a ``(C, in_chans·P·P)``
    matrix. The same function as the convolution; on an H200 in bf16, cuDNN ran that
    convolution (3 input channels) at about 33 TFLOP/s, 0.9 ms of a 13 ms Mixer-B/16 batch of
    128, where ViT-B/16's product of the same shape (its attention projection) ran at about
    400 (``results/perf/benchmark-perf-gpu-NVIDIA-H200.json``). Under autocast the images are
    cast before they are rearranged.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p, q = self.kernel_size
        dtype = token_kernel.autocast_dtype(x)
        patches = rearrange(x if dtype is None else x.to(dtype),
                            "b c (h p) (w q) -> b (h w) (c p q)", p=p, q=q)
        return F.linear(patches, self.weight.flatten(1), self.bias)


class MixerBlock(nn.Module):
    """One Mixer layer (paper Eq. 1), pre-norm residual. ``(B, S, C) -> (B, S, C)``.

    U = X + W2 σ(W1 LN(X)^T)^T  (token mixing, per channel)
    Y = U + W4 σ(W3 LN(U))      (channel mixing, per token)
    """

    def __init__(self, cfg: MixerConfig, drop_path: float = 0.0) -> None:
        super().__init__()
        self.norm1 = LayerNorm(cfg.hidden_dim, eps=1e-6)
        self.mlp_tokens = TokenMixingMlp(cfg.num_patches, cfg.tokens_mlp_dim, cfg.gelu,
                                         cfg.drop_rate)
        self.norm2 = LayerNorm(cfg.hidden_dim, eps=1e-6)
        self.mlp_channels = MlpBlock(cfg.hidden_dim, cfg.channels_mlp_dim, cfg.gelu,
                                     cfg.drop_rate, cfg.fused_dense_gelu)
        self.drop_path = DropPath(drop_path)
        self.fused_token_mixing = cfg.fused_token_mixing
        self.token_kernel_form = cfg.token_kernel_form

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if token_kernel.applies(self, x):  # inference on a GPU: one kernel, same function
            x = token_kernel.token_mixing_block(self, x)
        else:
            x = x + self.drop_path(self.mlp_tokens(self.norm1(x)))
        return x + self.drop_path(self.mlp_channels(self.norm2(x)))


class MlpMixer(nn.Module):
    """MLP-Mixer classifier. ``(B, in_chans, H, W)`` images -> ``(B, num_classes)`` logits.

    Inputs are expected in [-1, 1] (``(x - 0.5) / 0.5`` after scaling to [0, 1]), the range
    the official checkpoints were trained with.
    """

    def __init__(self, cfg: MixerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        # Per-patch fully connected layer (Flax: a strided convolution named "stem"), giving a
        # contiguous (B, S, C) residual stream from here on.
        self.stem = PatchStem(cfg.in_chans, cfg.hidden_dim, cfg.patch_size, cfg.patch_size)
        dpr = [cfg.drop_path_rate * i / max(cfg.num_blocks - 1, 1)
               for i in range(cfg.num_blocks)]
        self.blocks = nn.ModuleList(MixerBlock(cfg, p) for p in dpr)
        self.norm = LayerNorm(cfg.hidden_dim, eps=1e-6)  # "pre_head_layer_norm"
        self.pool = Reduce("b s c -> b c", "mean")  # global average pooling over tokens
        self.head_drop = nn.Dropout(cfg.drop_rate)
        self.head = nn.Linear(cfg.hidden_dim, cfg.num_classes) if cfg.num_classes else None
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Flax defaults: lecun_normal kernels, zero biases, unit LN scale, zero head."""
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv2d)):
                lecun_normal_(module.weight, fan_in=module.weight[0].numel())
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        if self.head is not None:
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)

    def check_input(self, x: torch.Tensor) -> None:
        """Raise a clear error when ``x`` does not fit the model's patch grid."""
        cfg = self.cfg
        if x.ndim != 4:
            raise ValueError(
                f"{cfg.name} expects a batch of images (B, {cfg.in_chans}, H, W); got a tensor "
                f"of shape {tuple(x.shape)}. Add a batch dimension with x.unsqueeze(0)."
            )
        if x.shape[1] != cfg.in_chans:
            hint = " (channels-last? use x.permute(0, 3, 1, 2))" if x.shape[-1] == cfg.in_chans \
                else ""
            raise ValueError(
                f"{cfg.name} expects {cfg.in_chans} input channels in dim 1, got shape "
                f"{tuple(x.shape)}{hint}."
            )
        if not x.is_floating_point():
            raise ValueError(
                f"{cfg.name} expects floating-point images in [-1, 1]; got {x.dtype}. Scale "
                f"uint8 pixels first, x.float() / 127.5 - 1, as mixer_lib's transforms do."
            )
        weight = self.stem.weight
        if x.dtype != weight.dtype and token_kernel.autocast_dtype(x) is None:
            raise ValueError(
                f"{cfg.name}'s weights are {weight.dtype} and the images {x.dtype}: cast the "
                f"images, x.to({weight.dtype}), or run the model under torch.autocast."
            )
        if tuple(x.shape[-2:]) != (cfg.img_size, cfg.img_size):
            raise ValueError(
                f"{cfg.name} was built for {cfg.img_size}x{cfg.img_size} images "
                f"({cfg.grid_size}x{cfg.grid_size} patches of {cfg.patch_size} px); got "
                f"{x.shape[-2]}x{x.shape[-1]}. The token-mixing MLP has a fixed number of "
                f"tokens, so resize/crop inputs to {cfg.img_size} px, or build the model for "
                f"that size with mixer_lib.pretrained(variant, weights, "
                f"img_size={x.shape[-1]}), which maps released token-mixing weights to the "
                f"new grid (paper App. C), or create_model(..., img_size={x.shape[-1]})."
            )

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """``(B, 3, H, W) -> (B, S, C)`` tokens after the final LayerNorm."""
        self.check_input(x)
        x = self.stem(x)
        for block in self.blocks:
            if self.cfg.grad_checkpointing and self.training and torch.is_grad_enabled():
                x = checkpoint(block, x, use_reentrant=False)
            else:
                x = block(x)
        return self.norm(x)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """``(B, S, C) -> (B, num_classes)`` (or pooled ``(B, C)`` with ``pre_logits``)."""
        x = self.head_drop(self.pool(x))
        if pre_logits or self.head is None:
            return x
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a zero-initialised one for ``num_classes`` (fine-tuning)."""
        self.cfg = replace(self.cfg, num_classes=num_classes)
        self.head = nn.Linear(self.cfg.hidden_dim, num_classes) if num_classes else None
        if self.head is not None:
            self.head.to(self.stem.weight.device, self.stem.weight.dtype)
            nn.init.zeros_(self.head.weight)
            nn.init.zeros_(self.head.bias)


def create_model(variant: str | MixerConfig = "Mixer-B/16", **overrides: object) -> MlpMixer:
    """Build a Mixer from the Table 1 registry, e.g.
    ``create_model("Mixer-B/16", num_classes=1000, img_size=224)``."""
    return MlpMixer(get_config(variant, **overrides))
