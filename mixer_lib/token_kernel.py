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

Two forms of the kernel (``MixerConfig.token_kernel_form``):

* ``"pointers"`` (any CUDA GPU Triton supports; the default before model form
  ``gemm-stem-tma``, and where the TMA form cannot run): tiles loaded through tensors of
  pointers. Compiled for an H100/H200 (sm_90a) at 256 padded tokens (the /16 variants,
  H/14), every tile shape spills about 1-5 KB of registers per thread to local memory, and
  its loads are plain ones the threads wait for, with no asynchronous copies to overlap the
  products (Triton 3.6 and 3.8; ``benchmarks/token_kernel_compiled.py``, run on a CPU). On the
  H200 it reached 148 TFLOP/s, 19 % of the bf16 matmul peak.
* ``"tma"`` (Hopper and later, sm_90+): the same arithmetic with every tile moved by the
  tensor-memory accelerator through tensor descriptors (out-of-bounds rows read as zeros, so
  the padding needs no masks), ``W1`` passed transposed so its rows are 16-byte aligned. Its
  tile shapes in :data:`CONFIGS` compile with no spills and a pipelined loop (the stream in
  bf16, as the model hands it to the kernel). It needs rows of 16-byte multiples (C and D_S
  multiples of 8 in bf16) and 16-byte aligned tensors, else the pointer form runs. The
  default since the H200 records of 2f7240f showed it faster than the pointer form alone
  (246 against 148 TFLOP/s) and in Mixer-B/16 (1.14x, bf16 autocast, batch 128), and as
  close to float32 (``scripts/perf-on-gpu.sh`` measures both; :mod:`mixer_lib.fused_paths`
  says what the records support).

Tests run the kernel on the CPU through Triton's interpreter (``TRITON_INTERPRET=1`` set before
this module is imported; fp16 only, its bf16 products are wrong there), which :func:`applies`
accepts on any device.
"""

from __future__ import annotations

import math
import os

import torch
from torch.utils.flop_counter import register_flop_formula

try:
    import triton
    import triton.language as tl
except ImportError:  # pragma: no cover - Triton comes with torch's Linux wheels
    triton = None
try:
    from triton.tools.tensor_descriptor import TensorDescriptor
except ImportError:  # pragma: no cover - Triton before 3.4: the pointer form only
    TensorDescriptor = None

MAX_TOKENS = 256  # S above this takes the reference path (the (S, C_block) tile per program)
INTERPRETED = os.environ.get("TRITON_INTERPRET") == "1"
_DOT_DTYPES = {torch.bfloat16: "bf16", torch.float16: "fp16"}
FORMS = ("pointers", "tma")  # MixerConfig.token_kernel_form
# The tile shapes tried on a GPU the first time a shape is met (triton.autotune keeps the
# fastest per (S, C, D_S), GELU and dtypes, among the entries of the form in use): how the
# products are written ("tokens": tokens as the accumulator's rows; "channels": channels as
# rows; "tma": channels as rows, tiles moved by TMA), channel block, hidden-unit chunk,
# warps, pipeline stages. benchmarks/token_kernel_configs.py runs and times each alone;
# ("tokens", 32, 64, 4, 2) faulted on an H200 (illegal memory access, Triton 3.6,
# 2026-11-27), so the pointer form's channel blocks start at 64. The "tma" shapes are those
# that compile for sm_90a without spilling registers at 64 and 256 padded tokens, both GELUs,
# with the stream in bf16 as the model hands it to the kernel (under bf16 autocast and with
# bf16 weights; benchmarks/token_kernel_compiled.py): channel blocks of 128 or 64, one to
# three pipeline stages as far as shared memory holds them, 8 or 4 warps. With a float32
# stream, which the model does not make, the 128-channel shapes of two and three stages
# spill a few bytes per thread; the autotuner times them apart (the dtypes key its choice).
CONFIGS = [("tokens", 64, 64, 8, 2), ("tokens", 128, 32, 8, 2), ("channels", 128, 64, 8, 2),
           ("channels", 128, 32, 8, 2), ("channels", 64, 64, 4, 2), ("channels", 128, 64, 8, 1),
           ("channels", 64, 32, 4, 3),
           ("tma", 128, 64, 8, 1), ("tma", 128, 32, 8, 1), ("tma", 128, 64, 8, 2),
           ("tma", 128, 32, 8, 3), ("tma", 64, 64, 8, 2), ("tma", 64, 32, 8, 2),
           ("tma", 64, 64, 8, 3), ("tma", 64, 64, 4, 1), ("tma", 64, 32, 4, 1)]


def check_form(form: str) -> None:
    """Refuse a kernel form that is not one of :data:`FORMS`."""
    if form not in FORMS:
        raise ValueError(f"token_kernel_form must be one of {FORMS} ('tma' needs a Hopper "
                         f"GPU or later), got {form!r}")


def select_configs(spec: str, configs: list | None = None) -> list[int]:
    """Indices into ``configs`` (default :data:`CONFIGS`) named by ``spec``: ``all``, or
    comma-separated indices and forms (``tokens``, ``channels``, ``tma``: every entry of
    that form), in ``configs``' order, each once."""
    configs = CONFIGS if configs is None else configs
    if spec == "all":
        return list(range(len(configs)))
    chosen = set()
    for item in spec.split(","):
        if item.isdigit() and int(item) < len(configs):
            chosen.add(int(item))
        elif any(c[0] == item for c in configs):
            chosen |= {i for i, c in enumerate(configs) if c[0] == item}
        else:
            forms = sorted({c[0] for c in configs})
            raise ValueError(f"--configs: {item!r} is neither an index below {len(configs)} "
                             f"nor a form ({', '.join(forms)})")
    return sorted(chosen)


def configs_of(form: str) -> list[tuple[str, int, int, int, int]]:
    """The entries of :data:`CONFIGS` that ``form`` (one of :data:`FORMS`) autotunes among."""
    return [c for c in CONFIGS if (c[0] == "tma") == (form == "tma")]


def applies(block: torch.nn.Module, x: torch.Tensor) -> bool:
    """Whether ``block`` (a :class:`~mixer_lib.model.MixerBlock`) computes its token mixing on
    ``x (B, S, C)`` through the fused kernel (the conditions in the module's docstring)."""
    mlp = block.mlp_tokens
    if triton is None or not block.fused_token_mixing:
        return False
    if not (x.is_cuda or INTERPRETED) or x.ndim != 3 or x.shape[1] > MAX_TOKENS:
        return False
    if grad_wanted(x, *block.norm1.parameters(), *mlp.parameters()):
        return False  # the kernel has no backward: anything of the half that trains
    if block.training and (mlp.drop1.p > 0 or block.drop_path.p > 0):
        return False
    return kernel_dtype(x, mlp.fc1.weight) in _DOT_DTYPES


def grad_wanted(*tensors: torch.Tensor) -> bool:
    """Whether autograd would record a gradient through any of ``tensors`` (an input and the
    parameters of a layer): the test of the inference-only paths (this kernel,
    :mod:`mixer_lib.dense_gelu`, the model's LayerNorm in the compute dtype)."""
    return torch.is_grad_enabled() and any(t.requires_grad for t in tensors)


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


def _operands(block: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """``x, LN(x), W1, b1, W2, b2`` of ``block`` as the kernel takes them."""
    mlp = block.mlp_tokens
    dtype = kernel_dtype(x, mlp.fc1.weight)
    w1, b1, w2, b2 = (t.to(dtype) for t in (mlp.fc1.weight, mlp.fc1.bias, mlp.fc2.weight,
                                           mlp.fc2.bias))
    # in the compute dtype (model.LayerNorm at inference); were it float32 (a plain
    # nn.LayerNorm under autocast), the kernel would round it as it loads
    y = block.norm1(x)
    return x, y, w1, b1, w2, b2


def token_mixing_block(block: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``x + TokenMixingMlp(LN(x))`` of ``block`` for ``x (B, S, C)`` through the kernel."""
    return token_mixing_residual(*_operands(block, x),
                                 block.mlp_tokens.act.approximate == "none",
                                 block.token_kernel_form == "tma")


def form_used(block: torch.nn.Module, x: torch.Tensor) -> str | None:
    """Which form of the kernel ``block`` runs on ``x``: None where it does not apply,
    ``"tma"`` where asked for and :func:`tma_possible`, else ``"pointers"``."""
    if not applies(block, x):
        return None
    if block.token_kernel_form != "tma":
        return "pointers"
    x, y, _, _, w2, _ = (t.contiguous() for t in _operands(block, x))
    return "tma" if tma_possible(x, y, w2) else "pointers"


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

    @triton.jit
    def _token_mixing_tma_kernel(x_desc, y_desc, w1t_desc, b1_ptr, w2_desc, b2_ptr, out_desc,
                                 S, C, DS, X_SIZE, Y_SIZE,
                                 BLOCK_S: tl.constexpr, BLOCK_C: tl.constexpr,
                                 BLOCK_H: tl.constexpr, EXACT: tl.constexpr):
        """The channels-as-rows products with every tile moved by TMA: ``x, y, out`` as
        (B, S, C) descriptors of blocks (1, BLOCK_S, BLOCK_C), ``W1^T (S, D_S)`` and
        ``W2 (S, D_S)`` of blocks (BLOCK_S, BLOCK_H). Rows and columns past S, C or D_S read
        as zeros (so the padded tokens and hidden units add nothing) and are not stored.
        ``C`` and the bytes per element of ``x`` and ``y`` (``X_SIZE``, ``Y_SIZE``) are not
        read: they key the autotuner (a descriptor, unlike a pointer, gives it no dtype)."""
        dot_dtype = w1t_desc.dtype
        b = tl.program_id(1)
        c0 = tl.program_id(0) * BLOCK_C
        yt = tl.trans(y_desc.load([b, 0, c0]).reshape(BLOCK_S, BLOCK_C).to(dot_dtype))
        acc = tl.zeros((BLOCK_C, BLOCK_S), dtype=tl.float32)
        for h0 in range(0, DS, BLOCK_H):
            h = h0 + tl.arange(0, BLOCK_H)
            b1 = tl.load(b1_ptr + h, mask=h < DS, other=0.0).to(tl.float32)
            a = _gelu(tl.dot(yt, w1t_desc.load([0, h0])) + b1[None, :], EXACT)  # (C_b, H_b)
            acc = tl.dot(a.to(dot_dtype), tl.trans(w2_desc.load([0, h0])), acc)  # (C_b, S_b)
        s = tl.arange(0, BLOCK_S)
        acc += tl.load(b2_ptr + s, mask=s < S, other=0.0).to(tl.float32)[None, :]
        out = tl.trans(acc) + x_desc.load([b, 0, c0]).reshape(BLOCK_S, BLOCK_C).to(tl.float32)
        out_desc.store([b, 0, c0], out.to(out_desc.dtype).reshape(1, BLOCK_S, BLOCK_C))

    def _tma_blocks(nargs: dict) -> None:
        """Autotuning's pre-hook: each descriptor's block shape for the config being run."""
        tile, chunk = [1, nargs["BLOCK_S"], nargs["BLOCK_C"]], [nargs["BLOCK_S"], nargs["BLOCK_H"]]
        for name in ("x_desc", "y_desc", "out_desc"):
            nargs[name].block_shape = tile
        for name in ("w1t_desc", "w2_desc"):
            nargs[name].block_shape = chunk

    _tuned_kernel = triton.autotune(
        configs=[triton.Config({"BLOCK_C": bc, "BLOCK_H": bh, "CHANNEL_ROWS": form == "channels"},
                               num_warps=w, num_stages=st)
                 for form, bc, bh, w, st in configs_of("pointers")],
        key=["S", "C", "DS", "EXACT"],
    )(_token_mixing_kernel)
    _tuned_tma_kernel = triton.autotune(
        configs=[triton.Config({"BLOCK_C": bc, "BLOCK_H": bh}, num_warps=w, num_stages=st,
                               pre_hook=_tma_blocks)
                 for _, bc, bh, w, st in configs_of("tma")],
        key=["S", "C", "DS", "EXACT", "X_SIZE", "Y_SIZE"],
    )(_token_mixing_tma_kernel)


def _block_tokens(tokens: int) -> int:
    """The token axis padded to a power of two (at least 16, the tensor cores' minimum)."""
    return max(16, 1 << math.ceil(math.log2(tokens)))


def tma_device(device: torch.device) -> bool:
    """Whether the ``"tma"`` form can run on ``device``: Triton with tensor descriptors and a
    GPU of compute capability 9.0 or later (any device under the interpreter)."""
    if triton is None or TensorDescriptor is None:
        return False
    return INTERPRETED or (device.type == "cuda"
                           and torch.cuda.get_device_capability(device)[0] >= 9)


def tma_possible(x: torch.Tensor, y: torch.Tensor, w2: torch.Tensor) -> bool:
    """Whether the ``"tma"`` form can run on these (contiguous) tensors: :func:`tma_device`,
    rows of ``x``, ``y`` (C) and ``w2`` (D_S) whole multiples of 16 bytes, and their starts
    at 16-byte boundaries (TMA's rules). ``W1`` needs no check: the op copies it transposed
    into a new tensor, whose rows have ``w2``'s width and dtype."""
    if not tma_device(x.device):
        return False
    rows = all(t.shape[-1] * t.element_size() % 16 == 0 for t in (x, y, w2))
    return rows and all(t.data_ptr() % 16 == 0 for t in (x, y, w2))


def _descriptors(x, y, w1, w2, out, block_s, block_c=None, block_h=None):
    """TMA descriptors of ``x, y, out (B, S, C)``, ``W1^T`` and ``W2 (S, D_S)`` (``w1``
    transposed into a new contiguous tensor); block shapes as given, else set by the
    autotuner's pre-hook."""
    tile = [1, block_s, block_c or 16]
    chunk = [block_s, block_h or 16]
    w1t = w1.t().contiguous()
    return ([TensorDescriptor.from_tensor(t, tile) for t in (x, y)]
            + [TensorDescriptor.from_tensor(t, chunk) for t in (w1t, w2)]
            + [TensorDescriptor.from_tensor(out, tile)])


def run_config(x: torch.Tensor, y: torch.Tensor, w1: torch.Tensor, b1: torch.Tensor,
               w2: torch.Tensor, b2: torch.Tensor, exact_gelu: bool,
               config: tuple[str, int, int, int, int], out: torch.Tensor) -> torch.Tensor:
    """The kernel with one entry of :data:`CONFIGS` (no autotuning) into ``out``; contiguous
    inputs as :func:`token_mixing_residual` takes them (for a ``"tma"`` entry, inputs
    :func:`tma_possible` accepts)."""
    form, block_c, block_h, warps, stages = config
    bsz, s, c = x.shape
    grid = (triton.cdiv(c, block_c), bsz)
    if form == "tma":
        xd, yd, w1d, w2d, outd = _descriptors(x, y, w1, w2, out, _block_tokens(s), block_c,
                                              block_h)
        _token_mixing_tma_kernel[grid](
            xd, yd, w1d, b1, w2d, b2, outd, s, c, w1.shape[0], x.element_size(),
            y.element_size(), BLOCK_S=_block_tokens(s),
            BLOCK_C=block_c, BLOCK_H=block_h, EXACT=exact_gelu, num_warps=warps,
            num_stages=stages)
        return out
    _token_mixing_kernel[grid](
        x, y, w1, b1, w2, b2, out, s, c, w1.shape[0], BLOCK_S=_block_tokens(s),
        BLOCK_C=block_c, BLOCK_H=block_h, EXACT=exact_gelu, CHANNEL_ROWS=form == "channels",
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
                          exact_gelu: bool, tma: bool = False) -> torch.Tensor:
    """``x + (W2 GELU(W1 y + b1) + b2)`` per sample, products over the token axis:
    ``x, y (B, S, C)``, ``w1 (D_S, S)``, ``b1 (D_S,)``, ``w2 (S, D_S)``, ``b2 (S,)`` ->
    ``(B, S, C)`` in the dtype ``x + branch`` has (branch in the weights' dtype). ``tma``:
    the ``"tma"`` form where :func:`tma_possible`, else the pointer form."""
    _check(x, y, w1, b1, w2, b2)
    x, y, w1, b1, w2, b2 = (t.contiguous() for t in (x, y, w1, b1, w2, b2))
    bsz, s, c = x.shape
    out = torch.empty_like(x, dtype=torch.promote_types(x.dtype, w1.dtype))
    form = "tma" if tma and tma_possible(x, y, w2) else "pointers"
    if INTERPRETED:  # Triton's CPU interpreter: the form's first tile shape, no timing
        return run_config(x, y, w1, b1, w2, b2, exact_gelu, configs_of(form)[0], out)
    grid = lambda meta: (triton.cdiv(c, meta["BLOCK_C"]), bsz)  # noqa: E731
    with torch.cuda.device(x.device):
        if form == "tma":
            xd, yd, w1d, w2d, outd = _descriptors(x, y, w1, w2, out, _block_tokens(s))
            _tuned_tma_kernel[grid](xd, yd, w1d, b1, w2d, b2, outd, s, c, w1.shape[0],
                                    x.element_size(), y.element_size(),
                                    BLOCK_S=_block_tokens(s), EXACT=exact_gelu)
        else:
            _tuned_kernel[grid](x, y, w1, b1, w2, b2, out, s, c, w1.shape[0],
                                BLOCK_S=_block_tokens(s), EXACT=exact_gelu)
    return out


@register_flop_formula(torch.ops.mixer_lib.token_mixing_residual)
def _token_mixing_flops(x_shape, y_shape, w1_shape, *args, **kwargs) -> int:
    """FlopCounterMode's count for the kernel: its two products per sample,
    ``(D_S, S) @ (S, C)`` and ``(S, D_S) @ (D_S, C)``, 4·B·S·C·D_S, as the reference's two
    products count (the GELU, biases and residual uncounted, like every element-wise op)."""
    bsz, s, c = x_shape
    return 4 * bsz * s * c * w1_shape[0]


@token_mixing_residual.register_fake
def _(x, y, w1, b1, w2, b2, exact_gelu, tma=False):
    _check(x, y, w1, b1, w2, b2)
    return torch.empty_like(x, dtype=torch.promote_types(x.dtype, w1.dtype),
                            memory_format=torch.contiguous_format)


def set_fused(model: torch.nn.Module, on: bool, form: str | None = None) -> None:
    """Turn the fused kernel on or off in every block of ``model``, and where ``form`` is
    given, pick its form (one of :data:`FORMS`); a run option, no weights change."""
    if form is not None:
        check_form(form)
    for module in model.modules():
        if hasattr(module, "fused_token_mixing"):
            module.fused_token_mixing = on
            if form is not None:
                module.token_kernel_form = form


@torch.no_grad()
def compare_with_reference(model: torch.nn.Module, images: torch.Tensor,
                           dtype: torch.dtype) -> dict[str, float | int]:
    """Features of ``model`` (eval mode) on ``images (B, 3, H, W)`` three ways: through the
    fused kernel and through the reference, both under autocast to ``dtype``, and the
    reference in float32. Returns the largest absolute differences of the first two from the
    float32 features, between them, the number of blocks that took the kernel and of those
    that took its TMA form."""
    model.eval()
    used = tma = 0  # blocks that took the kernel, its TMA form (counted when it was on)

    def count(block, args):
        nonlocal used, tma
        form = form_used(block, args[0])
        used += form is not None
        tma += form == "tma"

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
            "blocks_fused": used, "blocks_tma": tma, "blocks": len(blocks)}
