"""Model zoo: the networks pruned in the papers keras-filterprune reproduces.

- `vggish()`: the VGGish audio embedding network, with `load_vggish_checkpoint`
  for the official TF1 checkpoint and the `VGGishPostprocessor` PCA layer.
- `dcase21_net()`: the DCASE 2021 Task 1A baseline CNN (46,246 parameters).
- `cnn14()`: PANNs CNN14, the AudioSet tagging network (about 80 M parameters),
  with `audio.PANNsLogMel` as its front-end.
- `vgg16_cifar()`, `resnet_cifar(depth)`: the CIFAR-10 networks of Li et al.
  (2017), with the `ShortcutPad` layer for option-A residual shortcuts.

All builders return functional `keras.Model`s whose custom layers are registered,
so saved `.keras` files load without `custom_objects`.
"""

from keras_filterprune.models.cifar import ShortcutPad, resnet_cifar, vgg16_cifar
from keras_filterprune.models.dcase import dcase21_net
from keras_filterprune.models.panns import cnn14
from keras_filterprune.models.vggish import (
    VGGISH_NAME_MAP,
    VGGishPostprocessor,
    load_vggish_checkpoint,
    vggish,
)

__all__ = [
    "VGGISH_NAME_MAP",
    "ShortcutPad",
    "VGGishPostprocessor",
    "cnn14",
    "dcase21_net",
    "load_vggish_checkpoint",
    "resnet_cifar",
    "vgg16_cifar",
    "vggish",
]
