"""Audio front-ends (Keras layers) and audio loading.

- `VGGishLogMel`, `DCASELogMel`, `PANNsLogMel`: waveform → log-mel Keras layers
  that export to TFLite with the model.
- `load_audio`, `audio_dataset`, `resample`: decoding with soundfile and
  resampling with soxr (the optional `audio` extra).
"""

from keras_filterprune.audio.dataset import audio_dataset
from keras_filterprune.audio.frontends import (
    DCASELogMel,
    VGGishLogMel,
    slaney_mel_matrix,
    vggish_mel_matrix,
)
from keras_filterprune.audio.io import AUDIO_EXTENSIONS, load_audio, resample
from keras_filterprune.audio.panns import PANNsLogMel

__all__ = [
    "AUDIO_EXTENSIONS",
    "DCASELogMel",
    "PANNsLogMel",
    "VGGishLogMel",
    "audio_dataset",
    "load_audio",
    "resample",
    "slaney_mel_matrix",
    "vggish_mel_matrix",
]
