"""The model a run starts from: a Mixer (random, released or a run's weights, through
:func:`mixer_lib.pretrained.pretrained`) or a baseline, with the run's options."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from mixer_lib.baselines import BASELINES
from mixer_lib.config import ConfigError, RunConfig
from mixer_lib.model import create_model, lecun_normal_
from mixer_lib.pretrained import pretrained


def build_model(cfg: RunConfig, num_classes: int) -> tuple[nn.Module, str]:
    """The model for ``cfg`` with its weights loaded; returns it and a load report."""
    torch.manual_seed(cfg.seed)
    if cfg.variant in BASELINES:
        model = BASELINES[cfg.variant](num_classes, cfg.img_size)
        if cfg.weights == "random":
            return model, "random initialisation (PyTorch defaults)"
        if not cfg.weights.endswith(".pt"):
            raise ConfigError(f"{cfg.variant} starts from random weights or a run's "
                              f"checkpoint.pt; got weights={cfg.weights!r}")
        return model, load_baseline_checkpoint(model, Path(cfg.weights))
    options = dict(num_classes=num_classes, img_size=cfg.img_size, gelu=cfg.gelu,
                   drop_rate=cfg.drop_rate, drop_path_rate=cfg.drop_path_rate,
                   grad_checkpointing=cfg.grad_checkpointing == "on")
    if cfg.weights == "random":
        return (create_model(cfg.variant, **options),
                "random initialisation (Flax defaults, zero head)")
    model, report = pretrained(cfg.variant, cfg.weights, **options)
    text = str(report)
    if cfg.token_init == "random":
        reinit_token_mixing(model)
        text += "\n  token-mixing MLPs re-initialised at random (token_init=random)"
    return model, text


@torch.no_grad()
def reinit_token_mixing(model: nn.Module) -> None:
    """Fresh Flax-default initialisation of every token-mixing MLP (the App. C alternative
    to block-diagonal copies of the pre-trained weights)."""
    for block in model.blocks:
        for layer in (block.mlp_tokens.fc1, block.mlp_tokens.fc2):
            lecun_normal_(layer.weight, fan_in=layer.weight[0].numel())
            nn.init.zeros_(layer.bias)


def load_baseline_checkpoint(model: nn.Module, path: Path) -> str:
    """A baseline's run checkpoint into ``model``; the head is re-initialised when its class
    count differs."""
    state = torch.load(path, map_location="cpu", weights_only=True)["model"]
    own = model.state_dict()
    head = [k for k in state if k.startswith("head.")]
    if any(state[k].shape != own[k].shape for k in head):
        state = {k: v for k, v in state.items() if k not in head}
        model.load_state_dict(state, strict=False)
        return f"loaded {len(state)} tensors from {path}; new head (class count differs)"
    model.load_state_dict(state)
    return f"loaded {len(state)} tensors from {path}"
