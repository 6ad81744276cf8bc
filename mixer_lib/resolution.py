"""Paper Appendix C: fine-tuning at a higher resolution. The patch grid grows by a factor K
per side; the token-mixing MLP is built K^2 times as wide and starts as K^2 block-diagonal
copies of the pre-trained one, one per tile of the grid."""

from __future__ import annotations

from dataclasses import replace

import torch

from mixer_lib.model import MixerConfig


def block_diagonal(weight: torch.Tensor, copies: int) -> torch.Tensor:
    """``diag(W, ..., W)`` with ``copies`` copies: (out, in) -> (copies*out, copies*in)."""
    return torch.block_diag(*([weight] * copies))


def tile_token_order(grid: int, factor: int) -> torch.Tensor:
    """Permutation from tile-major token order to the row-major order of a bigger grid.

    The high-resolution grid of ``(factor*grid)^2`` patches is cut into ``factor^2`` tiles of
    ``grid x grid`` patches; tile-major order lists tile 0's patches (row-major inside the
    tile), then tile 1's, and so on. Returns ``idx`` with ``row_major[idx] = tile_major``.
    """
    big = grid * factor
    rows = torch.arange(big).view(factor, grid, 1, 1)
    cols = torch.arange(big).view(1, 1, factor, grid)
    # tile (ti, tj), in-tile (r, c) -> row-major index (ti*grid + r) * big + tj*grid + c
    index = rows * big + cols  # (ti, r, tj, c)
    return index.permute(0, 2, 1, 3).reshape(-1)  # (ti, tj, r, c) = tile-major


def widen_token_mixing(weights: dict[str, torch.Tensor], cfg: MixerConfig,
                       ckpt: MixerConfig) -> tuple[str, str]:
    """Paper Appendix C: map token-mixing weights of a ``g x g`` grid to a ``Kg x Kg`` grid.

    The new grid is split into K^2 tiles of ``g x g`` patches (each tile is laid out exactly
    like the pre-training grid) and the token-mixing MLP starts as K^2 independent copies of
    the pre-trained one, one per tile: W1' = P^T diag(W1, ..., W1), W2' = diag(W2, ...) P,
    with hidden width K^2 D_S. Everything else in Mixer acts per token, so a model initialised
    this way maps an image made of K x K copies of a low-resolution image to the same
    features as the low-resolution model on that image. ``weights`` (our parameter names) are
    changed in place; returns the report's key and what was done. A grid that does not grow
    by a whole factor, or a model not K^2 times as wide, is a ValueError naming the fix.
    """
    g, big = ckpt.grid_size, cfg.grid_size
    if big % g or cfg.patch_size != ckpt.patch_size:
        raise ValueError(
            f"cannot map the checkpoint's {g}x{g} patch grid ({ckpt.img_size} px, patch "
            f"{ckpt.patch_size}) to the model's {big}x{big} grid ({cfg.img_size} px): the "
            f"block-diagonal initialisation (paper App. C) needs the grid to grow by a whole "
            f"factor. Use img_size = {ckpt.img_size} x k, e.g. {ckpt.img_size * 2}."
        )
    k2 = (big // g) ** 2
    if cfg.tokens_mlp_dim != k2 * ckpt.tokens_mlp_dim:
        raise ValueError(
            f"the model's token-mixing width D_S={cfg.tokens_mlp_dim} must be {k2} x "
            f"{ckpt.tokens_mlp_dim} = {k2 * ckpt.tokens_mlp_dim} for a {big}x{big} grid "
            f"initialised from a {g}x{g} checkpoint (paper App. C). Build the model with "
            f"mixer_lib.pretrained(variant, weights, img_size={cfg.img_size}), which makes "
            f"it that wide, or create_model(..., tokens_mlp_dim={k2 * ckpt.tokens_mlp_dim})."
        )
    order = tile_token_order(g, big // g)
    inverse = torch.argsort(order)
    for i in range(cfg.num_blocks):
        pre = f"blocks.{i}.mlp_tokens"
        w1 = block_diagonal(weights[f"{pre}.fc1.weight"], k2)  # acts on tile-major tokens
        weights[f"{pre}.fc1.weight"] = w1[:, inverse]  # accept row-major tokens
        weights[f"{pre}.fc1.bias"] = weights[f"{pre}.fc1.bias"].repeat(k2)
        w2 = block_diagonal(weights[f"{pre}.fc2.weight"], k2)
        weights[f"{pre}.fc2.weight"] = w2[inverse, :]  # emit row-major tokens
        weights[f"{pre}.fc2.bias"] = weights[f"{pre}.fc2.bias"].repeat(k2)[inverse]
    return "blocks.*.mlp_tokens", (
        f"{g}x{g} -> {big}x{big} patch grid: {k2} block-diagonal copies, D_S "
        f"{ckpt.tokens_mlp_dim} -> {cfg.tokens_mlp_dim} (paper App. C)"
    )


def widened_config(cfg: MixerConfig, ckpt: MixerConfig) -> MixerConfig:
    """``cfg`` with the token-mixing width its weights from ``ckpt`` need: at the checkpoint's
    own grid, the checkpoint's D_S where that is a square multiple of ``cfg``'s (a model
    widened earlier, e.g. fine-tuned at 448 px); on a grid K times as large per side, K^2
    times the checkpoint's D_S (paper Appendix C: K^2 block-diagonal copies). Anything else
    is left as it is (loading then names the mismatch)."""
    if cfg.patch_size != ckpt.patch_size:
        return cfg
    if cfg.grid_size == ckpt.grid_size:
        k2, rest = divmod(ckpt.tokens_mlp_dim, cfg.tokens_mlp_dim)
        if rest == 0 and round(k2**0.5) ** 2 == k2:
            return replace(cfg, tokens_mlp_dim=ckpt.tokens_mlp_dim)
        return cfg
    if cfg.grid_size > ckpt.grid_size and cfg.grid_size % ckpt.grid_size == 0:
        k2 = (cfg.grid_size // ckpt.grid_size) ** 2
        return replace(cfg, tokens_mlp_dim=k2 * ckpt.tokens_mlp_dim)
    return cfg
