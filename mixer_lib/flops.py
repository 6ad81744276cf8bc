"""Closed-form parameter and FLOP counts for a Mixer config (paper Table 1, Section 3).

FLOPs count 2 per multiply-add of the matrix products (stem, four Dense layers per block,
head), the convention of ``torch.utils.flop_counter``; LayerNorm, GELU, bias and pooling are
left out (under 1% of the total for every Table 1 variant).
"""

from __future__ import annotations

from mixer_lib.model import MixerConfig


def analytic_params(cfg: MixerConfig) -> int:
    """Number of parameters of ``MlpMixer(cfg)``."""
    c, s, ds, dc, p = (cfg.hidden_dim, cfg.num_patches, cfg.tokens_mlp_dim,
                       cfg.channels_mlp_dim, cfg.patch_size)
    stem = p * p * cfg.in_chans * c + c
    token_mlp = s * ds + ds + ds * s + s
    channel_mlp = c * dc + dc + dc * c + c
    block = 2 * 2 * c + token_mlp + channel_mlp
    head = c * cfg.num_classes + cfg.num_classes
    return stem + cfg.num_blocks * block + 2 * c + head


def analytic_flops(cfg: MixerConfig) -> int:
    """Forward FLOPs for one image (2 x multiply-adds of the matrix products)."""
    c, s, ds, dc, p = (cfg.hidden_dim, cfg.num_patches, cfg.tokens_mlp_dim,
                       cfg.channels_mlp_dim, cfg.patch_size)
    stem = 2 * s * (p * p * cfg.in_chans) * c
    block = 2 * (2 * c * s * ds) + 2 * (2 * s * c * dc)
    return stem + cfg.num_blocks * block + 2 * c * cfg.num_classes


def size_rows(variants: tuple[str, ...] = ("Mixer-S/32", "Mixer-B/16", "Mixer-L/16",
                                           "Mixer-H/14"),
              ) -> tuple[list[str], list[list[str]]]:
    """Parameters (built on the meta device, head included) and forward GFLOPs per image at
    224 px of ``variants``, as a table."""
    import torch

    from mixer_lib.model import create_model

    rows = []
    for variant in variants:
        with torch.device("meta"):
            m = create_model(variant)
        rows.append([variant, f"{sum(p.numel() for p in m.parameters()) / 1e6:.1f}",
                     f"{analytic_flops(m.cfg) / 1e9:.1f}"])
    return ["variant", "params (M)", "GFLOPs / image at 224 px"], rows


def table1_table() -> tuple[list[str], list[list]]:
    """Paper Table 1 regenerated from the built modules (224 px, meta device): each variant's
    layers, patch, S, C, D_S, D_C, head-less parameters beside Table 1's, parameters with a
    1000-class head, and forward GFLOPs per image (:func:`analytic_flops`)."""
    import torch

    from mixer_lib.model import VARIANTS, create_model
    from mixer_lib.published import PAPER_PARAMS_M

    rows = []
    for name, cfg in VARIANTS.items():
        with torch.device("meta"):
            bare = create_model(name, num_classes=0, img_size=224)
            headed = create_model(name, num_classes=1000, img_size=224)
        n, n_head = (sum(p.numel() for p in m.parameters()) for m in (bare, headed))
        rows.append([name, cfg.num_blocks, f"{cfg.patch_size}x{cfg.patch_size}",
                     cfg.num_patches, cfg.hidden_dim, cfg.tokens_mlp_dim, cfg.channels_mlp_dim,
                     f"{n / 1e6:.2f}", PAPER_PARAMS_M[name], f"{n_head / 1e6:.2f}",
                     f"{analytic_flops(headed.cfg) / 1e9:.1f}"])
    return (["variant", "layers", "patch", "S", "C", "D_S", "D_C",
             "params (M), no head, computed", "params (M), paper Table 1",
             "params (M) with 1000-class head", "GFLOPs / image"], rows)
