"""Audio front-ends (Keras layers) and audio loading.

- `VGGishLogMel`, `DCASELogMel`: waveform → log-mel Keras layers that export to
  TFLite with the model.
- `load_audio`, `audio_dataset`, `resample`: decoding with soundfile and
  resampling with soxr (the optional `audio` extra).
"""

from keras_filterprune.audio.frontends import (
    DCASELogMel,
    VGGishLogMel,
    slaney_mel_matrix,
    vggish_mel_matrix,
)
from keras_filterprune.audio.io import (
    AUDIO_EXTENSIONS,
    audio_dataset,
    load_audio,
    resample,
)

__all__ = [
    "AUDIO_EXTENSIONS",
    "DCASELogMel",
    "VGGishLogMel",
    "audio_dataset",
    "load_audio",
    "resample",
    "slaney_mel_matrix",
    "vggish_mel_matrix",
]
