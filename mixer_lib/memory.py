"""How a run fits in a GPU's memory: micro-batches and gradient checkpointing, planned.

The global batch (512 in the paper) is what the experiment is; how it is cut into
micro-batches (gradient accumulation) and whether blocks are recomputed in the backward pass
(gradient checkpointing) only say how it executes (``RunConfig``'s execution fields). The plan
takes the largest micro-batch that fits:

    peak = fixed + micro_batch x activations per image x SLACK

* ``activations per image``: the tensors autograd saves for the backward pass, counted in
  closed form from the Mixer's shapes (:func:`activation_bytes`; a test compares it with the
  bytes a real forward pass saves, counted by ``saved_tensors_hooks``). Under bf16 autocast
  the residual stream and the LayerNorm inputs stay float32, matmul inputs and MLP hiddens
  are bf16. With checkpointing only each block's input is kept, plus one block's
  activations while it is recomputed.
* ``fixed``: weights, gradients, optimiser state (momentum SGD 1, AdamW 2 copies), the
  autocast copy of the weights, DDP's gradient buckets, and a reserve for the CUDA context,
  cuBLAS workspaces and the evaluation batch (:data:`RESERVE_BYTES`).
* ``SLACK`` covers the backward pass's transient gradients and allocator fragmentation.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from mixer_lib.flops import analytic_params
from mixer_lib.model import MixerConfig, get_config

GiB = 2**30
RESERVE_BYTES = 3 * GiB  # CUDA context, cuBLAS/cuDNN workspaces, eval batch, other tenants
SLACK = 1.25  # transient backward buffers and fragmentation on top of the saved tensors


def activation_bytes(cfg: MixerConfig, precision: str, checkpointing: bool = False,
                     device_type: str = "cuda") -> int:
    """Bytes autograd keeps per image between forward and backward (Mixer, training).

    Per block, in elements: LayerNorm inputs 2 S C, LayerNorm outputs as matmul inputs 2 S C,
    MLP hiddens before and after GELU 2 D_S C + 2 S D_C. In float32 all are 4 bytes. Under
    bf16 autocast all are 2 bytes, except that CUDA's autocast runs LayerNorm in float32 and
    so saves a float32 copy of each LayerNorm input (CPU autocast does not).
    """
    s, c, ds, dc = cfg.num_patches, cfg.hidden_dim, cfg.tokens_mlp_dim, cfg.channels_mlp_dim
    low = 2 if precision == "bf16" else 4
    ln_in = 4 if precision != "bf16" or device_type == "cuda" else 2
    block = 2 * s * c * ln_in + (2 * s * c + 2 * ds * c + 2 * s * dc) * low
    image = cfg.in_chans * cfg.img_size**2
    edges = image * low + s * c * (ln_in + low) + c * low  # stem input; final LN; pooled
    if checkpointing:  # block inputs kept, one block recomputed at a time
        return cfg.num_blocks * s * c * low + block + edges
    return cfg.num_blocks * block + edges


def fixed_bytes(num_params: int, optimizer: str, precision: str, world_size: int) -> int:
    """Weights, gradients, optimiser state, autocast weight copy, DDP buckets, reserve."""
    copies = 2 + (2 if optimizer == "adamw" else 1)  # weights, grads, optimiser state
    total = num_params * 4 * copies
    if precision == "bf16":
        total += num_params * 2
    if world_size > 1:
        total += num_params * 4
    return total + RESERVE_BYTES


@dataclass(frozen=True)
class MemoryPlan:
    """How one run executes in ``budget_bytes`` of device memory per process."""

    variant: str
    img_size: int
    precision: str
    global_batch: int
    world_size: int
    micro_batch: int  # images per process per forward/backward
    accum_steps: int  # micro-batches per update on each process
    grad_checkpointing: bool
    activation_bytes_per_image: int
    fixed_bytes: int
    estimate_bytes: int  # the expected peak per process
    budget_bytes: int
    fits: bool

    def as_dict(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        ckpt = ", gradient checkpointing" if self.grad_checkpointing else ""
        return (f"{self.variant} {self.img_size}px {self.precision}: batch {self.global_batch}"
                f" = {self.world_size} GPU x {self.accum_steps} x micro-batch "
                f"{self.micro_batch}{ckpt}; about {self.estimate_bytes / GiB:.1f} of "
                f"{self.budget_bytes / GiB:.1f} GiB")


def _divisors_descending(n: int) -> list[int]:
    return [d for d in range(n, 0, -1) if n % d == 0]


def plan(variant: str | MixerConfig, img_size: int, global_batch: int, budget_bytes: int,
         precision: str = "bf16", world_size: int = 1, optimizer: str = "sgd",
         checkpointing: str = "auto", accum_steps: int | None = None,
         num_classes: int = 1000) -> MemoryPlan:
    """The largest micro-batch (a divisor of the per-process batch) that fits
    ``budget_bytes``; checkpointing only when even one image per step would not fit without
    it (``checkpointing="auto"``), or as forced (``"on"``/``"off"``). ``accum_steps`` given:
    that split, checked. A plan that fits nothing has ``fits=False``."""
    cfg = get_config(variant, img_size=img_size, num_classes=num_classes)
    if global_batch % world_size:
        raise ValueError(f"global batch {global_batch} is not divisible by {world_size} "
                         f"processes")
    per_rank = global_batch // world_size
    fixed = fixed_bytes(analytic_params(cfg), optimizer, precision, world_size)
    options = {"auto": (False, True), "off": (False,), "on": (True,)}[checkpointing]
    micros = [per_rank // accum_steps] if accum_steps else _divisors_descending(per_rank)
    best = None
    for ckpt in options:
        act = activation_bytes(cfg, precision, ckpt)
        for micro in micros:
            estimate = fixed + int(micro * act * SLACK)
            best = MemoryPlan(cfg.name, img_size, precision, global_batch, world_size, micro,
                              per_rank // micro, ckpt, act, fixed, estimate, budget_bytes,
                              estimate <= budget_bytes)
            if best.fits:
                return best
    assert best is not None
    return best


def saved_bytes(model: torch.nn.Module, images: torch.Tensor,
                autocast: torch.dtype | None = None) -> int:
    """Bytes of the distinct storages autograd saves in one training forward pass of
    ``images`` (what the backward pass keeps alive); the measured side of
    :func:`activation_bytes` (the difference of two batch sizes is the per-image part)."""
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    model.train()
    kind = images.device.type
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t), \
            torch.autocast(kind, dtype=autocast or torch.float32, enabled=autocast is not None):
        model(images).float().sum()
    return sum(seen.values())
