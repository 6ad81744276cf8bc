"""The channel-mixing MLP's first dense layer with its bias and GELU in one call at inference
on a GPU (paper Eq. 1, second line: ``σ(W3 LN(U) + b3)``).

``torch._addmm_activation(b, x, W^T, use_gelu=True)``: on CUDA, cuBLASLt's GELU-and-bias
epilogue, the tanh approximation (Flax's default GELU), applied to the float32 accumulators
before the product's one rounding. The hidden ``(B·S, D_C)`` activations are written once,
instead of written by the product, then read and written again by a separate GELU: for
Mixer-B/16 at batch 128 in bf16, 154 MB each way per block.

Where it applies (:func:`applies`): on a CUDA device, without autocast (the weights already
in the compute dtype, as with ``model.to(torch.bfloat16)``), with the tanh GELU, no gradient
wanted (the op has no backward) and no active dropout; ``MixerConfig(fused_dense_gelu=False)``
turns it off. Not under autocast: on an H200 at 2f7240f, Mixer-B/16 at batch 128 ran 1.08x
faster with it with bf16 weights but 0.92x as fast under bf16 autocast
(``results/perf/benchmark-perf-gpu-forms-NVIDIA-H200.json``). Not on a CPU: there the same
op computes the exact (erf) GELU, which the tests check.
Under ``torch.compile`` the op stays one call (Inductor keeps it as a fallback kernel).
``torch.utils.flop_counter.FlopCounterMode`` counts it as the product it computes (torch
2.11 to 2.14 count no FLOPs for it), so a model's counted FLOPs do not depend on the path.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import flop_registry, register_flop_formula

from mixer_lib.token_kernel import autocast_dtype, grad_wanted

if torch.ops.aten._addmm_activation not in flop_registry:  # a later torch may count it
    @register_flop_formula(torch.ops.aten._addmm_activation)
    def _dense_gelu_flops(bias_shape, a_shape, b_shape, *args, **kwargs) -> int:
        """``(m, k) @ (k, n)``: 2·m·k·n, as for ``addmm`` (the GELU uncounted, like every
        element-wise op)."""
        return 2 * a_shape[0] * a_shape[1] * b_shape[1]


# devices whose torch._addmm_activation applies the tanh GELU (a CPU's applies the exact one)
DEVICES = ("cuda",)


def applies(mlp: nn.Module, x: torch.Tensor) -> bool:
    """Whether ``mlp`` (a :class:`~mixer_lib.model.MlpBlock`) computes ``GELU(fc1(x))`` for
    ``x (..., dim)`` in one call (the conditions in the module's docstring)."""
    if not (mlp.fused_dense_gelu and x.device.type in DEVICES):
        return False
    if autocast_dtype(x) is not None:
        return False  # slower under autocast on an H200 (the module's docstring)
    if mlp.act.approximate != "tanh":
        return False
    if grad_wanted(x, *mlp.fc1.parameters()):
        return False  # no backward: anything that trains takes fc1 then GELU
    return not (mlp.training and mlp.drop1.p > 0)


def dense_gelu(fc: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``GELU(x @ W^T + b)`` of the dense layer ``fc`` for ``x (..., in)`` -> ``(..., out)``,
    in autocast's dtype where autocast is on (else the weights'), in one
    ``torch._addmm_activation`` call. The GELU is the device's: tanh on CUDA, exact on a
    CPU (where :func:`applies` never takes this path)."""
    dtype = autocast_dtype(x) or fc.weight.dtype
    rows = x.reshape(-1, x.shape[-1]).to(dtype)
    out = torch._addmm_activation(fc.bias.to(dtype), rows, fc.weight.to(dtype).t(),
                                  use_gelu=True)
    return out.view(*x.shape[:-1], out.shape[-1])


@torch.no_grad()
def compare_with_reference(fc: nn.Linear, x: torch.Tensor) -> dict[str, float]:
    """:func:`dense_gelu` of ``fc`` on ``x (..., in)`` against ``fc`` followed by each GELU,
    all in ``x``'s dtype without autocast: the largest absolute differences from the tanh
    and from the exact (erf) GELU. In float32 they tell the two apart (the GELUs differ by up
    to about 5e-4): on CUDA the fused call should match tanh to rounding, on a CPU it
    matches exact."""
    with torch.autocast(x.device.type, enabled=False):
        fused = dense_gelu(fc, x)
        pre = nn.functional.linear(x, fc.weight.to(x.dtype), fc.bias.to(x.dtype))
        return {"vs_tanh": (fused - nn.functional.gelu(pre, approximate="tanh")).abs().max()
                .item(),
                "vs_exact": (fused - nn.functional.gelu(pre)).abs().max().item()}
