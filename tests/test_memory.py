"""Memory planning: the activation estimate against what autograd really saves, the plan's
choices, and that micro-batching and checkpointing leave an update's result unchanged."""

from __future__ import annotations

import pytest
import torch

from mixer_lib.config import RunConfig
from mixer_lib.memory import GiB, activation_bytes, plan, saved_bytes
from mixer_lib.model import create_model
from mixer_lib.train import train
from tests.test_data import make_image_folder


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("variant,img_size", [("Mixer-S/32", 64), ("Mixer-T/4", 32)])
def test_activation_estimate_matches_saved_tensors(variant, img_size, precision):
    """Per image: bytes saved for backward at batch 4 minus batch 2, halved (weights and their
    autocast copies cancel), against the closed form, within 10 %."""
    model = create_model(variant, img_size=img_size, num_classes=10)
    dtype = torch.bfloat16 if precision == "bf16" else None
    measured = [saved_bytes(model, torch.randn(b, 3, img_size, img_size), dtype)
                for b in (2, 4)]
    per_image = (measured[1] - measured[0]) / 2
    estimate = activation_bytes(model.cfg, precision, device_type="cpu")
    assert abs(estimate - per_image) / per_image < 0.10, (estimate, per_image)


def test_plan_picks_largest_micro_batch_then_checkpointing():
    roomy = plan("Mixer-B/16", 224, 512, 140 * GiB)
    assert (roomy.micro_batch, roomy.accum_steps, roomy.grad_checkpointing) == (512, 1, False)
    h100 = plan("Mixer-L/16", 224, 512, 79 * GiB)
    assert h100.fits and h100.accum_steps > 1 and not h100.grad_checkpointing
    assert h100.micro_batch * h100.accum_steps == 512
    assert h100.estimate_bytes <= 79 * GiB
    # a budget too small for one image without checkpointing: checkpointing is switched on
    one = activation_bytes(create_model("Mixer-L/16", img_size=448).cfg, "bf16")
    tight = plan("Mixer-L/16", 448, 512, h100.fixed_bytes + int(one * 0.5))
    assert tight.fits and tight.grad_checkpointing
    hopeless = plan("Mixer-L/16", 448, 512, 1 * GiB)
    assert not hopeless.fits
    eight = plan("Mixer-L/16", 448, 512, 79 * GiB, world_size=8)
    assert eight.micro_batch * eight.accum_steps * 8 == 512


def _run(root, **kw) -> RunConfig:
    base = dict(dataset=f"imagefolder:{root}", variant="Mixer-T/4", img_size=16,
                recipe="finetune", steps=3, batch_size=16, lr=0.05, warmup_steps=1, grad_clip=0,
                eval_every=3, checkpoint_every=3, num_workers=0, seed=2)
    return RunConfig(**{**base, **kw})


def _weights(run) -> dict[str, torch.Tensor]:
    return torch.load(run / "checkpoint.pt", map_location="cpu", weights_only=True)["model"]


def _max_diff(a, b) -> float:
    return max(float((a[k] - b[k]).abs().max()) for k in a)


@pytest.mark.parametrize("change", [dict(accum_steps=4), dict(grad_checkpointing="on")])
def test_micro_batching_and_checkpointing_give_the_same_weights(tmp_path, change):
    root = make_image_folder(tmp_path / "data", per_class=8)
    train(_run(root, accum_steps=1, grad_checkpointing="off"), tmp_path / "a", progress=False)
    # the same experiment: execution fields only, so the same run folder would be reused
    other = train(_run(root, **change), tmp_path / "b", progress=False)
    a, b = _weights(tmp_path / "a"), _weights(tmp_path / "b")
    moved = _max_diff(a, {k: torch.zeros_like(v) for k, v in a.items()})
    assert _max_diff(a, b) <= 1e-5 * moved
    assert _max_diff(a, _weights(tmp_path / "a")) == 0
    key = next(iter(change))
    assert other["config"][key] == change[key]  # the record says how it ran
