"""Released or saved weights as a ready model: the one way training, evaluation and the
chapters get one.

``pretrained("Mixer-B/16", "imagenet21k", num_classes=10, img_size=448)`` downloads (or finds
in the cache) the released checkpoint, builds the model the weights need and loads them:

* ``weights``: a released name (``imagenet21k``, ``imagenet1k``, ``sam``, ``gsam``), a path to
  an ``.npz`` file in the official layout, or a ``checkpoint.pt`` of a run of this library;
* ``num_classes``: None keeps the checkpoint's head; another count gets a zero-initialised
  head (fine-tuning, paper Section 3.1);
* ``img_size``: on the checkpoint's patch grid the model takes its token-mixing width; on a
  grid K times as large per side the model is built with K^2 times that width and starts from
  K^2 block-diagonal copies (paper Appendix C). The model is built that wide from the start,
  never rewritten after loading.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from mixer_lib.checkpoints import (
    WEIGHTS,
    CheckpointError,
    LoadReport,
    checkpoint_info,
    download,
    load_state,
    npz_weights,
    timm_weights,
)
from mixer_lib.model import MixerConfig, MlpMixer, get_config
from mixer_lib.resolution import widened_config


def checkpoint_weights(variant: str, weights: str | os.PathLike, progress: bool = True,
                       ) -> tuple[dict[str, torch.Tensor], MixerConfig, str]:
    """The weights named by ``weights`` (see the module docstring) as our parameter names,
    the config they describe and where they came from."""
    text = str(weights)
    if text in WEIGHTS:
        path = download(checkpoint_info(variant, text).name, progress=progress)
        return (*npz_weights(path), str(path))
    path = Path(weights)
    if path.suffix == ".pt":  # a run of this library: its checkpoint.pt
        if not path.exists():
            raise CheckpointError(f"checkpoint {path} does not exist; give a run's "
                                  f"checkpoint.pt, an official .npz or one of {WEIGHTS}")
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)["model"]
        except Exception as err:  # noqa: BLE001 - any unreadable file gets one message
            first = (str(err).splitlines() or [""])[0][:160]
            raise CheckpointError(f"{path} is not a readable checkpoint.pt of a run "
                                  f"({type(err).__name__}: {first}); use checkpoint.prev.pt "
                                  f"of that run, or rerun it") from err
        # our names are timm's but for the stem (timm: stem.proj.*)
        state = {("stem.proj." + k[5:] if k.startswith("stem.") else k): v
                 for k, v in state.items()}
        return (*timm_weights(state), str(path))
    return (*npz_weights(path), str(path))


def pretrained(variant: str, weights: str | os.PathLike, *, num_classes: int | None = None,
               img_size: int = 224, progress: bool = True,
               **options: object) -> tuple[MlpMixer, LoadReport]:
    """``variant`` (Table 1 name) built for ``weights`` and loaded with them; returns the
    model (``(B, 3, img_size, img_size) -> (B, num_classes)``) and what loading did.
    ``options``: further :class:`~mixer_lib.model.MixerConfig` fields (``gelu``,
    ``drop_rate``, ``drop_path_rate``, ``grad_checkpointing``)."""
    state, ckpt, source = checkpoint_weights(variant, weights, progress)
    classes = ckpt.num_classes if num_classes is None else num_classes
    cfg = widened_config(get_config(variant, num_classes=classes, img_size=img_size,
                                    **options), ckpt)
    model = MlpMixer(cfg)
    return model, load_state(model, state, ckpt, source)
