"""One fused kernel for a Mixer block's token-mixing half at inference (paper Eq. 1, first line).

``x + W2 σ(W1 LN(x)^T + b1)^T + b2`` for ``x (B, S, C)`` in one Triton kernel: each program
takes one sample ``b`` and a block of channels, multiplies ``W1 (D_S, S)`` by the sample's
normalised ``(S, C_block)`` tile in chunks of hidden units, adds ``b1`` and applies GELU in
registers, multiplies by the matching columns of ``W2 (S, D_S)``, and adds ``b2`` and the
residual before the one store. The hidden ``(D_S, C)`` activations never reach memory.

Why: as two batched products (``TokenDense``) the token-mixing MLP of Mixer-B/16 ran at 76
TFLOP/s in bf16 on an H200 against a measured matmul peak of about 790
(``results/perf/benchmark-token-mixing-NVIDIA-H200.json``): its products are short (K = S =
196) and write and re-read a hidden tensor twice the size of the input, so they wait on memory.

Where it applies (:func:`applies`): inference only (no gradient wanted), on a CUDA device with
Triton, computing in bf16 or fp16 (autocast's dtype, else the weights' dtype), with at most
:data:`MAX_TOKENS` tokens (every token of a sample is held by one program; S = 196 for the
/16 variants at 224 px, 49 for /32, 256 for H/14) and no active dropout. Everything else,
training included, takes :class:`~mixer_lib.model.TokenMixingMlp`, the reference this kernel
is tested against. ``MixerConfig(fused_token_mixing=False)`` turns it off. Tokens are padded
to the next power of two inside the kernel (196 -> 256; the padded rows are zeros, masked on
store), which the tensor cores need.

The first call of each shape (S, C, D_S, GELU, dtypes) times every entry of :data:`CONFIGS`
and keeps the fastest for the process (about 9 s on an H200); later calls launch at once.

Numerics: products in the compute dtype with float32 accumulation, as cuBLAS does; the hidden
activations are rounded to the compute dtype once, after GELU (the reference rounds them
before GELU too), and the branch is added to the residual in float32 before one rounding.

Tests run the kernel on the CPU through Triton's interpreter (``TRITON_INTERPRET=1`` set before
this module is imported; fp16 only, its bf16 products are wrong there), which :func:`applies`
accepts on any device.
"""

from __future__ import annotations

import math
import os

import torch

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - Triton comes with torch's Linux wheels
    triton = None

MAX_TOKENS = 256  # S above this takes the reference path (the (S, C_block) tile per program)
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
_DOT_DTYPES = {torch.bfloat16: "bf16", torch.float16: "fp16"}
# The tile shapes tried on a GPU the first time a shape is met (triton.autotune keeps the
# fastest per (S, C, D_S), GELU and dtypes): channels as rows (the kernel's CHANNEL_ROWS),
# channel block, hidden-unit chunk, warps, stages. benchmarks/token_kernel_configs.py runs
# and times each alone; (False, 32, 64, 4, 2) faulted on an H200 (illegal memory access,
# Triton 3.6, 2026-11-27), so channel blocks start at 64.
CONFIGS = [(False, 64, 64, 8, 2), (False, 128, 32, 8, 2), (True, 128, 64, 8, 2),
           (True, 128, 32, 8, 2), (True, 64, 64, 4, 2), (True, 128, 64, 8, 1),
           (True, 64, 32, 4, 3)]


def applies(block: torch.nn.Module, x: torch.Tensor) -> bool:
    """Whether ``block`` (a :class:`~mixer_lib.model.MixerBlock`) computes its token mixing on
    ``x (B, S, C)`` through the fused kernel (the conditions in the module's docstring)."""
    mlp = block.mlp_tokens
    if triton is None or not block.fused_token_mixing:
        return False
    if not (x.is_cuda or INTERPRETED) or x.ndim != 3 or x.shape[1] > MAX_TOKENS:
        return False
    if torch.is_grad_enabled() and (x.requires_grad or block.norm1.weight.requires_grad
                                    or any(p.requires_grad for p in mlp.parameters())):
        return False  # the kernel has no backward: anything of the half that trains
    if block.training and (mlp.drop1.p > 0 or block.drop_path.p > 0):
        return False
    return kernel_dtype(x, mlp.fc1.weight) in _DOT_DTYPES


def autocast_dtype(x: torch.Tensor) -> torch.dtype | None:
    """Autocast's compute dtype for ``x``'s device when autocast is on there, else None (the
    token-mixing half's dtype, in this kernel and in ``TokenMixingMlp``)."""
    kind = x.device.type
    if kind in _AUTOCAST_DEVICES and torch.is_autocast_enabled(kind):
        return torch.get_autocast_dtype(kind)
    return None


_AUTOCAST_DEVICES = ("cuda", "cpu", "xpu", "mps", "hpu")  # "meta" has no autocast state


def kernel_dtype(x: torch.Tensor, weight: torch.Tensor) -> torch.dtype:
    """The dtype the kernel computes in: autocast's on ``x``'s device, else the weights'."""
    return autocast_dtype(x) or weight.dtype


def token_mixing_block(block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x + TokenMixingMlp(LN(x))`` of ``block`` for ``x (B, S, C)`` through the kernel."""
    mlp = block.mlp_tokens
    dtype = kernel_dtype(x, mlp.fc1.weight)
    w1, b1, w2, b2 = (t.to(dtype) for t in (mlp.fc1.weight, mlp.fc1.bias, mlp.fc2.weight,
                                           mlp.fc2.bias))
    y = block.norm1(x)  # float32 under autocast: the kernel rounds it as it loads
    return token_mixing_residual(x, y, w1, b1, w2, b2, mlp.act.approximate == "none")


if triton is not None:

    @triton.jit
    def _gelu(a, EXACT: tl.constexpr):
        if EXACT:
            return 0.5 * a * (1.0 + tl.math.erf(a * 0.7071067811865476))
        inner = 0.7978845608028654 * (a + 0.044715 * a * a * a)
        return a * tl.sigmoid(2.0 * inner)  # 0.5 (1 + tanh(u)) = sigmoid(2u)

    @triton.jit
    def _token_mixing_kernel(x_ptr, y_ptr, w1_ptr, b1_ptr, w2_ptr, b2_ptr, out_ptr,
                             S, C, DS,
                             BLOCK_S: tl.constexpr, BLOCK_C: tl.constexpr,
                             BLOCK_H: tl.constexpr, EXACT: tl.constexpr,
                             CHANNEL_ROWS: tl.constexpr):
        """One program: sample ``program_id(1)``, channels ``program_id(0) * BLOCK_C ...``.

        ``CHANNEL_ROWS`` picks which way round the products are written: False, as the
        paper's left products (``W1 (H, S) @ y (S, C)``, tokens as rows of the accumulator);
        True, transposed (``y^T (C, S) @ W1^T (S, H)``, channels as rows), which puts the
        wide channel block on the tensor cores' row axis and the hidden chunk of the second
        product in registers. Same arithmetic; the autotuner times both."""
        dot_dtype = w1_ptr.dtype.element_ty
        b = tl.program_id(1).to(tl.int64)
        s = tl.arange(0, BLOCK_S)
        c = tl.program_id(0) * BLOCK_C + tl.arange(0, BLOCK_C)
        if CHANNEL_ROWS:
            tile = b * S * C + s[None, :] * C + c[:, None]  # (BLOCK_C, BLOCK_S)
            in_tile = (s[None, :] < S) & (c[:, None] < C)
        else:
            tile = b * S * C + s[:, None] * C + c[None, :]  # (BLOCK_S, BLOCK_C)
            in_tile = (s[:, None] < S) & (c[None, :] < C)
        y = tl.load(y_ptr + tile, mask=in_tile, other=0.0).to(dot_dtype)
        if CHANNEL_ROWS:
            acc = tl.zeros((BLOCK_C, BLOCK_S), dtype=tl.float32)
        else:
            acc = tl.zeros((BLOCK_S, BLOCK_C), dtype=tl.float32)
        for h0 in range(0, DS, BLOCK_H):
            h = h0 + tl.arange(0, BLOCK_H)
            b1 = tl.load(b1_ptr + h, mask=h < DS, other=0.0).to(tl.float32)
            if CHANNEL_ROWS:
                w1t = tl.load(w1_ptr + h[None, :] * S + s[:, None],
                              mask=(h[None, :] < DS) & (s[:, None] < S), other=0.0)
                a = _gelu(tl.dot(y, w1t) + b1[None, :], EXACT)  # (BLOCK_C, BLOCK_H)
                w2t = tl.load(w2_ptr + s[None, :] * DS + h[:, None],
                              mask=(s[None, :] < S) & (h[:, None] < DS), other=0.0)
                acc = tl.dot(a.to(dot_dtype), w2t, acc)  # (BLOCK_C, BLOCK_S)
            else:
                w1 = tl.load(w1_ptr + h[:, None] * S + s[None, :],
                             mask=(h[:, None] < DS) & (s[None, :] < S), other=0.0)
                a = _gelu(tl.dot(w1, y) + b1[:, None], EXACT)  # (BLOCK_H, BLOCK_C)
                w2 = tl.load(w2_ptr + s[:, None] * DS + h[None, :],
                             mask=(s[:, None] < S) & (h[None, :] < DS), other=0.0)
                acc = tl.dot(w2, a.to(dot_dtype), acc)  # (BLOCK_S, BLOCK_C)
        if CHANNEL_ROWS:
            acc += tl.load(b2_ptr + s, mask=s < S, other=0.0).to(tl.float32)[None, :]
        else:
            acc += tl.load(b2_ptr + s, mask=s < S, other=0.0).to(tl.float32)[:, None]
        acc += tl.load(x_ptr + tile, mask=in_tile, other=0.0).to(tl.float32)
        tl.store(out_ptr + tile, acc.to(out_ptr.dtype.element_ty), mask=in_tile)

    _tuned_kernel = triton.autotune(
        configs=[triton.Config({"BLOCK_C": bc, "BLOCK_H": bh, "CHANNEL_ROWS": rows},
                               num_warps=w, num_stages=st)
                 for rows, bc, bh, w, st in CONFIGS],
        key=["S", "C", "DS", "EXACT"],
    )(_token_mixing_kernel)


def _block_tokens(tokens: int) -> int:
    """The token axis padded to a power of two (at least 16, the tensor cores' minimum)."""
    return max(16, 1 << math.ceil(math.log2(tokens)))


def run_config(x: torch.Tensor, y: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor,
               w2: torch.Tensor, b2: torch.Tensor, exact_gelu: bool,
               config: tuple[bool, int, int, int, int], out: torch.Tensor) -> torch.Tensor:
    """The kernel with one entry of :data:`CONFIGS` (no autotuning) into ``out``; contiguous
    inputs as :func:`token_mixing_residual` takes them."""
    rows, block_c, block_h, warps, stages = config
    bsz, s, c = x.shape
    _token_mixing_kernel[(triton.cdiv(c, block_c), bsz)](
        x, y, w1, b1, w2, b2, out, s, c, w1.shape[0], BLOCK_S=_block_tokens(s),
        BLOCK_C=block_c, BLOCK_H=block_h, EXACT=exact_gelu, CHANNEL_ROWS=rows,
        num_warps=warps, num_stages=stages)
    return out


def _check(x, y, w1, b1, w2, b2) -> None:
    bsz, s, c = x.shape
    ds = w1.shape[0]
    want = {"y": (y, (bsz, s, c)), "w1": (w1, (ds, s)), "b1": (b1, (ds,)), "w2": (w2, (s, ds)),
            "b2": (b2, (s,))}
    for name, (t, shape) in want.items():
        if tuple(t.shape) != shape:
            raise ValueError(f"token_mixing_residual: {name} has shape {tuple(t.shape)}, "
                             f"expected {shape} for x of shape {tuple(x.shape)}")
    if w1.dtype not in _DOT_DTYPES or len({w1.dtype, b1.dtype, w2.dtype, b2.dtype}) != 1:
        raise ValueError("token_mixing_residual: weights and biases must share one dtype, "
                         f"bf16 or fp16; got {w1.dtype}, {b1.dtype}, {w2.dtype}, {b2.dtype}")
    if s > MAX_TOKENS:
        raise ValueError(f"token_mixing_residual: {s} tokens > MAX_TOKENS={MAX_TOKENS}")


@torch.library.custom_op("mixer_lib::token_mixing_residual", mutates_args=())
def token_mixing_residual(x: torch.Tensor, y: torch.Tensor, w1: torch.Tensor,
                          b1: torch.Tensor, w2: torch.Tensor, b2: torch.Tensor,
                          exact_gelu: bool) -> torch.Tensor:
    """``x + (W2 GELU(W1 y + b1) + b2)`` per sample, products over the token axis:
    ``x, y (B, S, C)``, ``w1 (D_S, S)``, ``b1 (D_S,)``, ``w2 (S, D_S)``, ``b2 (S,)`` ->
    ``(B, S, C)`` in the dtype ``x + branch`` has (branch in the weights' dtype)."""
    _check(x, y, w1, b1, w2, b2)
    x, y, w1, b1, w2, b2 = (t.contiguous() for t in (x, y, w1, b1, w2, b2))
    bsz, s, c = x.shape
    out = torch.empty_like(x, dtype=torch.promote_types(x.dtype, w1.dtype))
    if INTERPRETED:  # Triton's CPU interpreter: the first tile shape, no timing
        return run_config(x, y, w1, b1, w2, b2, exact_gelu, CONFIGS[0], out)
    with torch.cuda.device(x.device):
        _tuned_kernel[lambda meta: (triton.cdiv(c, meta["BLOCK_C"]), bsz)](
            x, y, w1, b1, w2, b2, out, s, c, w1.shape[0], BLOCK_S=_block_tokens(s),
            EXACT=exact_gelu)
    return out


@token_mixing_residual.register_fake
def _(x, y, w1, b1, w2, b2, exact_gelu):
    _check(x, y, w1, b1, w2, b2)
    return torch.empty_like(x, dtype=torch.promote_types(x.dtype, w1.dtype),
                            memory_format=torch.contiguous_format)


def set_fused(model: torch.nn.Module, on: bool) -> None:
    """Turn the fused kernel on or off in every block of ``model`` (a run option; no weights
    change)."""
    for module in model.modules():
        if hasattr(module, "fused_token_mixing"):
            module.fused_token_mixing = on


@torch.no_grad()
def compare_with_reference(model: torch.nn.Module, images: torch.Tensor,
                           dtype: torch.dtype) -> dict[str, float | int]:
    """Features of ``model`` (eval mode) on ``images (B, 3, H, W)`` three ways: through the
    fused kernel and through the reference, both under autocast to ``dtype``, and the
    reference in float32. Returns the largest absolute differences of the first two from the
    float32 features, between them, and the number of blocks that took the kernel."""
    model.eval()
    used = 0  # blocks that took the kernel (counted when it was on)

    def count(block, args):
        nonlocal used
        used += applies(block, args[0])

    blocks = [m for m in model.modules() if hasattr(m, "fused_token_mixing")]
    hooks = [b.register_forward_pre_hook(count) for b in blocks]
    try:
        with torch.autocast(images.device.type, dtype=dtype):
            set_fused(model, True)
            fused = model.forward_features(images).float()
            set_fused(model, False)
            reference = model.forward_features(images).float()
    finally:
        for hook in hooks:
            hook.remove()
        set_fused(model, True)
    truth = model.forward_features(images.float()).float()
    return {"fused_vs_float32": (fused - truth).abs().max().item(),
            "reference_vs_float32": (reference - truth).abs().max().item(),
            "fused_vs_reference": (fused - reference).abs().max().item(),
            "blocks_fused": used, "blocks": len(blocks)}
