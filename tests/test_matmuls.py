"""mixer_lib.matmuls: a step's matrix products recorded after autocast and replayed alone."""

from __future__ import annotations

import torch
from torch import nn

from mixer_lib import create_model
from mixer_lib.matmuls import TensorSpec, mm_flops, record_matmuls, replay_seconds


def _step(model: nn.Module, x: torch.Tensor, dtype: torch.dtype | None = None):
    def step() -> None:
        with torch.autocast("cpu", dtype=dtype or torch.float32, enabled=dtype is not None):
            loss = model(x).float().square().mean()
        loss.backward()
    return step


def test_the_products_of_forward_and_backward_are_counted_exactly():
    """Two linear layers on an input that needs no gradient: forward 2 products, backward
    two weight gradients and one input gradient (none for the input itself)."""
    model = nn.Sequential(nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 8))
    calls = record_matmuls(_step(model, torch.randn(4, 16)))
    forward = 2 * 4 * (16 * 32 + 32 * 8)
    backward = 2 * (16 * 32 * 4 + 32 * 8 * 4) + 2 * 4 * 8 * 32
    assert len(calls) == 5 and mm_flops(calls) == forward + backward
    assert {c.op.__name__.split(".")[0] for c in calls} <= {"mm", "addmm"}  # no GELU, no sum


def test_a_mixer_step_records_its_token_and_channel_products_and_replays_them_as_they_were():
    """Mixer-T/4 at 16 px under bf16 autocast: the channel MLPs' products, the token MLPs'
    batched ones, the stem's product over the flattened patches (48 = 3·4·4 wide; no
    convolution) and its weight gradient, all in bf16 where autocast casts;
    a replay run under the recorder calls the same ops on the same layouts (shapes, strides,
    dtypes), and takes time."""
    torch.manual_seed(0)
    model = create_model("Mixer-T/4", num_classes=10, img_size=16)
    calls = record_matmuls(_step(model, torch.randn(2, 3, 16, 16), torch.bfloat16))
    names = {c.op.__name__.split(".")[0] for c in calls}
    assert not names & {"convolution", "convolution_backward"}
    assert sum(any(48 in a.shape for a in c.args if isinstance(a, TensorSpec))
               for c in calls) == 2  # the stem forward and its weight gradient
    assert names & {"mm", "addmm"} and names & {"bmm", "baddbmm"}
    dtypes = {a.dtype for c in calls for a in c.args if isinstance(a, TensorSpec)}
    assert torch.bfloat16 in dtypes
    replayed = record_matmuls(lambda: replay_seconds(calls, repeats=1, warmup=0))
    assert replayed == calls
    assert replay_seconds(calls, repeats=2) > 0


def test_an_expanded_argument_is_made_with_its_overlapping_strides():
    spec = TensorSpec((3, 4, 5), (0, 5, 1), torch.float32, "cpu")  # a weight per sample
    t = spec.make()
    assert t.shape == (3, 4, 5) and t.stride() == (0, 5, 1)
    assert torch.equal(t[0], t[2]) and 0 < t.abs().max() <= 1


def test_ours_and_timms_mixer_b16_call_products_of_the_same_flops():
    """What the Claims chapter's bound compares (throughputs.matmul_table): a training step
    of our Mixer-B/16 and of timm's mixer_b16_224 calls as many matrix products with the
    same FLOPs; the channel MLPs' are the same in shape and layout, token mixing is arranged
    differently (ours batched per sample on (B, S, C), timm's one product on the transposed
    (B*C, S)). The stems compute the same: ours as a product over the flattened patches,
    timm's as a strided convolution (a call without FLOPs in this count), so ours count
    its forward and weight-gradient products more."""
    from tests.conftest import import_or_skip

    timm = import_or_skip("timm", "timm is a benchmark peer (pip install timm)")
    torch.manual_seed(0)
    x = torch.randn(2, 3, 64, 64)
    ours = record_matmuls(_step(create_model("Mixer-B/16", num_classes=10, img_size=64), x))
    theirs = record_matmuls(_step(timm.create_model("mixer_b16_224", num_classes=10,
                                                    img_size=64), x))

    def channel_products(calls):  # those touching the 3072-wide channel MLP
        return sorted((c.op.__name__, tuple((a.shape, a.stride) for a in c.args
                                            if isinstance(a, TensorSpec)))
                      for c in calls if any(3072 in a.shape for a in c.args
                                            if isinstance(a, TensorSpec)))

    stem = 2 * 2 * (2 * 16) * (3 * 16 * 16) * 768  # forward, weight gradient: 2·B·S·3P²·C each
    assert len(ours) == len(theirs) and mm_flops(ours) == mm_flops(theirs) + stem > stem
    assert {c.op.__name__.split(".")[0] for c in theirs} >= {"convolution"}
    assert channel_products(ours) == channel_products(theirs) != []
    assert {c.op.__name__.split(".")[0] for c in ours} & {"bmm", "baddbmm"}


def test_every_op_named_is_known_to_this_torch():
    """The ops are looked up by name, so a torch without one still imports the module; the
    pinned torch has them all."""
    from mixer_lib.matmuls import MATMUL_OP_NAMES, MATMUL_OPS

    assert len(MATMUL_OPS) == len(MATMUL_OP_NAMES)


def test_aligned_rounds_the_leading_dimension_up_and_keeps_expanded_and_aligned_layouts():
    from mixer_lib.matmuls import aligned

    def spec(shape, stride):
        return TensorSpec(shape, stride, torch.bfloat16, "cpu")

    weight = spec((128, 384, 196), (0, 196, 1))  # Mixer-B/16's token-mixing weight per sample
    assert aligned(weight).stride == (0, 200, 1)
    assert aligned(spec((128, 196, 384), (0, 1, 196))).stride == (0, 1, 200)  # transposed
    assert aligned(spec((4, 3, 5), (15, 5, 1))).stride == (24, 8, 1)  # outer made dense
    assert aligned(spec((4, 3, 5), (15, 5, 1)), multiple=5).stride == (15, 5, 1)
    for kept in (spec((128, 768, 196), (150528, 1, 768)), spec((384,), (1,)),
                 spec((3, 4), (1, 0)), spec((3, 4), (2, 6))):  # aligned, 1-D, no unit stride
        assert aligned(kept) == kept
    t = aligned(weight).make()
    assert t.shape == (128, 384, 196) and t.stride() == (0, 200, 1)


def test_replay_groups_count_each_distinct_product_and_time_aligned_rows_where_they_differ():
    """Mixer-T/4 with 16 classes at 16 px (16 tokens: aligned) and at 12 px (9 tokens: the
    token-mixing weight's rows are not): every recorded product falls in one group, the
    groups' calls add up to the step's, each has seconds and (mm family) TFLOP/s; only the
    unaligned token products get an aligned replay, and the convolution never does."""
    from mixer_lib.matmuls import replay_groups

    for size, unaligned in ((16, False), (12, True)):
        torch.manual_seed(0)
        model = create_model("Mixer-T/4", num_classes=16, img_size=size)  # an aligned head
        calls = record_matmuls(_step(model, torch.randn(2, 3, size, size)))
        groups = replay_groups(calls, repeats=1, warmup=0)
        assert sum(g["calls"] for g in groups) == len(calls) and len(groups) < len(calls)
        assert all(g["seconds"] > 0 for g in groups)
        assert all(g["tflops"] > 0 for g in groups if g["op"] in ("mm", "addmm", "bmm",
                                                                    "baddbmm"))
        padded = [g for g in groups if "aligned_seconds" in g]
        assert bool(padded) == unaligned
        assert all(g["op"] in ("mm", "bmm", "baddbmm") and 9 in sum(g["shapes"], [])
                   for g in padded)


def test_the_one_call_dense_layer_and_gelu_is_recorded_and_counted_as_its_product(
        monkeypatch):
    """At inference on a GPU the channel MLP's first dense layer is one
    ``_addmm_activation`` call (mixer_lib.dense_gelu, opened on the CPU here): the products'
    replay and FLOPs must include it, as they include the layer taken as ``addmm``."""
    from mixer_lib import dense_gelu

    model = create_model("Mixer-T/4", num_classes=10).eval()
    x = torch.randn(2, 3, 32, 32)

    def infer() -> None:
        with torch.no_grad():
            model(x)

    unfused = record_matmuls(infer)
    monkeypatch.setattr(dense_gelu, "DEVICES", ("cpu",))
    fused = record_matmuls(infer)
    names = [c.op.__name__.split(".")[0] for c in fused]
    cfg = model.cfg
    assert names.count("_addmm_activation") == cfg.num_blocks
    blocks = 2 * cfg.num_blocks * (4 * cfg.hidden_dim * cfg.num_patches
                                   * (cfg.tokens_mlp_dim + cfg.channels_mlp_dim))  # batch 2
    assert mm_flops(fused) == mm_flops(unfused) >= blocks
    assert replay_seconds(fused, repeats=1, warmup=0) > 0
