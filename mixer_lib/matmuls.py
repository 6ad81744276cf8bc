"""The matrix products of a training step, replayed alone: how fast the step could be if
everything else in it (element-wise work, normalisation, the optimiser) took no time.

:func:`record_matmuls` runs a function once under a ``TorchDispatchMode`` and keeps every
matrix product it calls (``mm``, ``addmm``, the one-call dense layer and GELU of
:mod:`mixer_lib.dense_gelu`, ``bmm``, ``baddbmm``, convolutions and their backward, fused
attention), after autocast has chosen their dtype. :func:`replay_seconds`
runs those calls again on fresh tensors of the same shapes, strides and dtypes, and nothing
else. A model's step at ``s`` seconds whose products alone take ``m`` seconds spends
``1 - m / s`` of it elsewhere; against a peer whose step takes ``p`` seconds, ``p / m`` bounds
the speed-up any change that keeps the products can give (issue 17's CPU target).
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch.utils._python_dispatch import TorchDispatchMode

from mixer_lib.timing import median_seconds

MATMUL_OP_NAMES = (
    "mm", "addmm", "_addmm_activation", "bmm", "baddbmm", "convolution", "convolution_backward",
    "_scaled_dot_product_flash_attention", "_scaled_dot_product_flash_attention_backward",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_efficient_attention_backward",
    "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_cudnn_attention_backward",
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_flash_attention_for_cpu_backward",
)
# the ones this torch has (an older one, as on a GPU machine's image, may lack some)
MATMUL_OPS = frozenset(getattr(torch.ops.aten, name).default for name in MATMUL_OP_NAMES
                       if hasattr(torch.ops.aten, name))


@dataclass(frozen=True)
class TensorSpec:
    """What a replay needs of a tensor argument: its shape, strides, dtype and device."""

    shape: tuple[int, ...]
    stride: tuple[int, ...]
    dtype: torch.dtype
    device: str

    def make(self) -> torch.Tensor:
        """A tensor of this layout with values of unit scale (no denormals, no zeros)."""
        size = 1 + sum((n - 1) * s for n, s in zip(self.shape, self.stride, strict=True)) \
            if all(self.shape) else 0  # storage of overlapping (expanded) strides too
        base = torch.empty(size, dtype=self.dtype, device=self.device)
        base = base.uniform_(-1, 1) if base.is_floating_point() else base.zero_()
        return base.as_strided(self.shape, self.stride)


@dataclass(frozen=True)
class MatmulCall:
    """One recorded call: the op and its arguments, tensors replaced by their specs."""

    op: Any
    args: tuple
    kwargs: tuple[tuple[str, Any], ...]


def _spec(value: Any) -> Any:
    if isinstance(value, torch.Tensor):
        return TensorSpec(tuple(value.shape), tuple(value.stride()), value.dtype,
                          str(value.device))
    if isinstance(value, (list, tuple)):
        return type(value)(_spec(v) for v in value)
    return value


class _Recorder(TorchDispatchMode):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[MatmulCall] = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in MATMUL_OPS:
            self.calls.append(MatmulCall(func, _spec(tuple(args)),
                                         tuple(sorted(_spec(kwargs).items()))))
        return func(*args, **kwargs)


def record_matmuls(fn: Callable[[], object]) -> list[MatmulCall]:
    """The matrix products ``fn()`` calls, in order (it runs once)."""
    with _Recorder() as recorder:
        fn()
    return recorder.calls


def _matmul_flops(call: MatmulCall) -> int:
    """Multiply-adds x 2 of an ``mm``-family call (0 for the others)."""
    tensors = [a for a in call.args if isinstance(a, TensorSpec)]
    name = call.op.__name__.split(".")[0]
    if name in ("mm", "addmm", "_addmm_activation"):
        (m, k), (_, n) = tensors[-2].shape, tensors[-1].shape
        return 2 * m * k * n
    if name in ("bmm", "baddbmm"):
        (b, m, k), (_, _, n) = tensors[-2].shape, tensors[-1].shape
        return 2 * b * m * k * n
    return 0


def mm_flops(calls: list[MatmulCall]) -> int:
    """The FLOPs of the ``mm``-family calls among ``calls``."""
    return sum(map(_matmul_flops, calls))


def replay_seconds(calls: list[MatmulCall], repeats: int = 3, warmup: int = 1) -> float:
    """Median seconds of running ``calls`` once each, in order, on tensors of their recorded
    layouts (made once, shared by the calls of one layout), synchronised on a GPU."""
    made: dict[TensorSpec, torch.Tensor] = {}

    def real(value: Any) -> Any:
        if isinstance(value, TensorSpec):
            if value not in made:
                made[value] = value.make()
            return made[value]
        if isinstance(value, (list, tuple)):
            return type(value)(real(v) for v in value)
        return value

    ready = [(c.op, real(c.args), {k: real(v) for k, v in c.kwargs}) for c in calls]
    cuda = any(t.is_cuda for t in made.values())

    def once() -> None:
        for op, args, kwargs in ready:
            op(*args, **kwargs)
        if cuda:
            torch.cuda.synchronize()

    with torch.no_grad():
        return median_seconds(once, repeats, warmup)


def aligned(spec: TensorSpec, multiple: int = 8) -> TensorSpec:
    """``spec`` with its leading dimension (the stride of the dimension next to the unit-stride
    one) rounded up to a multiple of ``multiple`` elements and the strides outside it made
    dense again; expanded (stride-0) dimensions stay so. GPU matrix kernels read rows of
    16 bytes (8 bf16 values) at a time only when rows start at such multiples: a token-mixing
    weight of Mixer-B/16, ``(384, 196)``, does not. Unchanged when already aligned or when no
    dimension has unit stride."""
    dims = sorted((d for d, s in enumerate(spec.stride) if s and spec.shape[d] > 1),
                  key=lambda d: spec.stride[d])
    if len(dims) < 2 or spec.stride[dims[0]] != 1 or spec.stride[dims[1]] % multiple == 0:
        return spec
    stride = list(spec.stride)
    stride[dims[1]] = -(-spec.stride[dims[1]] // multiple) * multiple
    for inner, outer in itertools.pairwise(dims[1:]):
        stride[outer] = max(spec.stride[outer], stride[inner] * spec.shape[inner])
    return dataclasses.replace(spec, stride=tuple(stride))


def _aligned_call(call: MatmulCall, multiple: int) -> MatmulCall:
    def pad(value: Any) -> Any:
        if isinstance(value, TensorSpec):
            return aligned(value, multiple)
        if isinstance(value, (list, tuple)):
            return type(value)(pad(v) for v in value)
        return value

    return dataclasses.replace(call, args=pad(call.args),
                               kwargs=tuple((k, pad(v)) for k, v in call.kwargs))


def replay_groups(calls: list[MatmulCall], repeats: int = 3, warmup: int = 1,
                  multiple: int = 8) -> list[dict[str, Any]]:
    """Each distinct call among ``calls`` (same op and argument layouts), in order of first
    appearance, replayed alone: the op, its tensors' shapes and strides, how many times the
    step calls it, the median seconds of one call, the TFLOP/s of the ``mm`` family, and
    where an input of an ``mm``-family product has rows that are not aligned
    (:func:`aligned`), the seconds with aligned rows (``aligned_seconds``; the output's layout
    is the op's own)."""
    def key(value: Any) -> Any:  # hashable: lists (e.g. a convolution's stride) as tuples
        if isinstance(value, (list, tuple)):
            return tuple(key(v) for v in value)
        return value

    counts = collections.Counter(key((c.op, c.args, c.kwargs)) for c in calls)
    firsts = {key((c.op, c.args, c.kwargs)): c for c in reversed(calls)}
    out = []
    for k, call in reversed(firsts.items()):
        tensors = [a for a in call.args if isinstance(a, TensorSpec)]
        seconds = replay_seconds([call], repeats, warmup)
        flops = _matmul_flops(call)
        row = {"op": call.op.__name__.split(".")[0], "shapes": [list(t.shape) for t in tensors],
               "strides": [list(t.stride) for t in tensors], "dtype": str(tensors[0].dtype)
               if tensors else None, "calls": counts[k], "seconds": seconds,
               "tflops": flops / seconds / 1e12 if flops and seconds > 0 else None}
        padded = _aligned_call(call, multiple) if flops else call  # the mm family only
        if padded != call:
            row["aligned_seconds"] = replay_seconds([padded], repeats, warmup)
        out.append(row)
    return out
