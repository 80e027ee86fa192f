"""Small datasets read from local files (never downloaded), for demos and tests."""

from keras_filterprune.datasets.fashion_mnist import (
    FASHION_MNIST_CLASSES,
    fashion_mnist,
)
from keras_filterprune.datasets.spoken_digits import DIGIT_WORDS, spoken_digits

__all__ = [
    "FASHION_MNIST_CLASSES",
    "fashion_mnist",
    "DIGIT_WORDS",
    "spoken_digits",
]
