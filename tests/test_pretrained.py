"""``pretrained``: one way to get a model with released or saved weights (checkpoints made
here in the official layout; no download)."""

from __future__ import annotations

import pytest
import torch

from mixer_lib import create_model, pretrained
from mixer_lib.checkpoints import CheckpointError, save_npz
from mixer_lib.dryrun import write_standin_checkpoint


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("MIXER_CACHE_DIR", str(tmp_path / "cache"))
    return tmp_path / "cache"


def _same_weights(a: torch.nn.Module, b: torch.nn.Module, skip: tuple[str, ...] = ()) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    for k, v in sa.items():
        if not k.startswith(skip):
            assert torch.equal(v, sb[k]), k


def test_a_released_name_keeps_its_head_or_gets_a_new_one(cache):
    path = write_standin_checkpoint("Mixer-S/32", "gsam", cache, img_size=64)
    reference = create_model("Mixer-S/32", num_classes=1000, img_size=64)
    from mixer_lib.checkpoints import load_npz

    load_npz(reference, path)
    own, report = pretrained("Mixer-S/32", "gsam", img_size=64, progress=False)
    assert own.cfg.num_classes == 1000 and not report.reinitialised
    _same_weights(own, reference)
    tuned, report = pretrained("Mixer-S/32", "gsam", num_classes=10, img_size=64,
                               drop_path_rate=0.1, gelu="exact")
    assert tuned.cfg.num_classes == 10 and "head.weight" in report.reinitialised
    assert torch.all(tuned.head.weight == 0) and tuned.cfg.drop_path_rate == 0.1
    assert tuned.cfg.gelu == "exact"
    _same_weights(tuned, reference, skip=("head.",))


def test_a_larger_grid_builds_the_wider_model_of_appendix_c(tmp_path):
    low = create_model("Mixer-S/32", num_classes=5, img_size=64)
    path = save_npz(low, tmp_path / "low.npz")
    high, report = pretrained("Mixer-S/32", path, img_size=192)  # 2x2 -> 6x6 grid, K = 3
    assert high.cfg.tokens_mlp_dim == 9 * 256 and high.cfg.num_patches == 36
    assert high.blocks[0].mlp_tokens.fc1.weight.shape == (9 * 256, 36)
    assert "2x2 -> 6x6" in report.resized["blocks.*.mlp_tokens"]
    with torch.no_grad():
        img = torch.randn(1, 3, 64, 64)
        torch.testing.assert_close(high.eval()(img.repeat(1, 1, 3, 3)), low.eval()(img),
                                   rtol=1e-4, atol=1e-5)


def test_a_run_checkpoint_loads_with_its_own_width(tmp_path):
    """A run's checkpoint.pt, including one of a model widened earlier (fine-tuned at a
    larger grid): the model takes the width its weights have; a damaged or missing file is
    a CheckpointError that says what to do."""
    wide = create_model("Mixer-S/32", num_classes=3, img_size=128, tokens_mlp_dim=4 * 256)
    torch.nn.init.normal_(wide.head.weight)
    torch.save({"model": wide.state_dict(), "step": 7}, tmp_path / "checkpoint.pt")
    again, report = pretrained("Mixer-S/32", tmp_path / "checkpoint.pt", img_size=128)
    assert again.cfg.tokens_mlp_dim == 1024 and again.cfg.num_classes == 3
    assert not report.reinitialised and not report.resized
    _same_weights(again, wide)
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint.pt.*prev"):
        pretrained("Mixer-S/32", tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match="does not exist"):
        pretrained("Mixer-S/32", tmp_path / "nowhere.pt")


def test_another_variant_or_width_is_refused(tmp_path):
    path = save_npz(create_model("Mixer-S/32", img_size=64), tmp_path / "s32.npz")
    with pytest.raises(CheckpointError, match="is Mixer-S/32.*but the model is Mixer-B/32"):
        pretrained("Mixer-B/32", path, img_size=64)
    odd = create_model("Mixer-S/32", img_size=64, tokens_mlp_dim=300)  # not a square multiple
    odd_path = save_npz(odd, tmp_path / "odd.npz")
    with pytest.raises(CheckpointError, match="D_S=300.*but the model is.*D_S=256"):
        pretrained("Mixer-S/32", odd_path, img_size=64)
    with pytest.raises(CheckpointError, match="does not exist"):
        pretrained("Mixer-S/32", tmp_path / "missing.npz")
