"""mixer_lib: an executable reproduction of MLP-Mixer (Tolstikhin et al., 2021)."""

from mixer_lib.model import VARIANTS, MixerConfig, MlpMixer, create_model, get_config
from mixer_lib.pretrained import pretrained

__all__ = ["VARIANTS", "MixerConfig", "MlpMixer", "create_model", "get_config", "pretrained"]
__version__ = "0.1.0"
