"""Equivalence with a Flax reference of the official model code (jax/flax optional)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import import_or_skip

jax = import_or_skip("jax", "pip install -e '.[test]'")
flax = import_or_skip("flax", "pip install -e '.[test]'")
nn = import_or_skip("flax.linen", "pip install -e '.[test]'")
import_or_skip("flax.core", "pip install -e '.[test]'")
jnp = jax.numpy

from mixer_lib import MixerConfig, create_model  # noqa: E402
from mixer_lib.checkpoints import load_npz  # noqa: E402


class MlpBlock(nn.Module):
    mlp_dim: int

    @nn.compact
    def __call__(self, x):
        y = nn.gelu(nn.Dense(self.mlp_dim)(x))  # flax gelu: tanh approximation
        return nn.Dense(x.shape[-1])(y)


class MixerBlock(nn.Module):
    tokens_mlp_dim: int
    channels_mlp_dim: int

    @nn.compact
    def __call__(self, x):
        y = jnp.swapaxes(nn.LayerNorm()(x), 1, 2)
        y = jnp.swapaxes(MlpBlock(self.tokens_mlp_dim, name="token_mixing")(y), 1, 2)
        x = x + y
        return x + MlpBlock(self.channels_mlp_dim, name="channel_mixing")(nn.LayerNorm()(x))


class MlpMixer(nn.Module):
    """Independent Flax reference in the structure of the official ``models_mixer.py``."""

    patch: int
    num_classes: int
    num_blocks: int
    hidden_dim: int
    tokens_mlp_dim: int
    channels_mlp_dim: int

    @nn.compact
    def __call__(self, x):  # x: (B, H, W, 3), NHWC as in JAX
        x = nn.Conv(self.hidden_dim, (self.patch, self.patch), strides=(self.patch, self.patch),
                    name="stem")(x)
        x = x.reshape(x.shape[0], -1, x.shape[-1])
        for _ in range(self.num_blocks):
            x = MixerBlock(self.tokens_mlp_dim, self.channels_mlp_dim)(x)
        x = nn.LayerNorm(name="pre_head_layer_norm")(x)
        x = jnp.mean(x, axis=1)
        return nn.Dense(self.num_classes, kernel_init=nn.initializers.zeros, name="head")(x)


def flatten(tree, prefix=""):
    out = {}
    for k, v in tree.items():
        key = f"{prefix}/{k}" if prefix else k
        out.update(flatten(v, key) if isinstance(v, dict) else {key: np.asarray(v)})
    return out


@pytest.mark.parametrize("cfg", [
    MixerConfig("Mixer-custom/8", 8, 3, 64, 32, 128, img_size=32, num_classes=10),
    MixerConfig("Mixer-S/32", 32, 8, 512, 256, 2048, img_size=224, num_classes=10),
], ids=["tiny", "S32"])
def test_official_layout_npz_gives_flax_logits(cfg, tmp_path):
    ref = MlpMixer(cfg.patch_size, cfg.num_classes, cfg.num_blocks, cfg.hidden_dim,
                    cfg.tokens_mlp_dim, cfg.channels_mlp_dim)
    x = np.random.default_rng(0).uniform(-1, 1, (2, cfg.img_size, cfg.img_size, 3))
    x = x.astype(np.float32)
    params = ref.init(jax.random.PRNGKey(0), x)["params"]
    # randomise everything (the zero head and unit LayerNorms would hide layout mistakes)
    leaves, treedef = jax.tree_util.tree_flatten(params)
    keys = jax.random.split(jax.random.PRNGKey(1), len(leaves))
    leaves = [leaf + 0.05 * jax.random.normal(k, leaf.shape) for leaf, k in zip(leaves, keys,
                                                                                  strict=True)]
    params = jax.tree_util.tree_unflatten(treedef, leaves)
    np.savez(tmp_path / "flax.npz", **flatten(flax.core.unfreeze(params)))
    expected = np.asarray(ref.apply({"params": params}, x))

    model = create_model(cfg).eval()
    load_npz(model, tmp_path / "flax.npz")
    with torch.no_grad():
        got = model(torch.from_numpy(x).permute(0, 3, 1, 2)).numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    assert np.abs(expected).max() > 0.1  # non-trivial logits
