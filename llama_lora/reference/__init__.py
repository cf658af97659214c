"""Keras reference models: CNN, RNN/LSTM classifier, LSTM forecaster and DCGAN.

Classic deep-learning baselines to read, train and compare with LoRA fine-tuning. Install with
``pip install "llama_lora[reference]"`` (TensorFlow and Keras 3). ``import llama_lora`` never
imports this subpackage; importing it imports Keras.

Backend: Keras 3 reads ``KERAS_BACKEND`` once, when it is first imported. If the variable is
unset, this package sets it to ``"tensorflow"`` before importing Keras; set
``KERAS_BACKEND=torch`` yourself to run the models on PyTorch. If Keras was already imported
with another backend, that backend stays.

Example:
    >>> from llama_lora.reference import build_cnn, load_digits_28x28
    >>> (x_train, y_train), (x_test, y_test) = load_digits_28x28()
    >>> model = build_cnn()
    >>> model.fit(x_train, y_train, epochs=5)  # doctest: +SKIP
"""

from __future__ import annotations

import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from llama_lora.reference.classifiers import RNN_CELLS, build_cnn, build_rnn_classifier  # noqa: E402
from llama_lora.reference.data import (  # noqa: E402
    load_digits_28x28,
    load_mnist,
    make_sine_series,
)
from llama_lora.reference.forecasting import build_lstm_forecaster  # noqa: E402
from llama_lora.reference.gan import (  # noqa: E402
    GAN,
    build_discriminator,
    build_gan,
    build_generator,
)
from llama_lora.reference.text import (  # noqa: E402
    build_vocabulary,
    load_sentiment_sample,
    read_sentiment_sample,
    texts_to_sequences,
)

__all__ = [
    "GAN",
    "RNN_CELLS",
    "build_cnn",
    "build_discriminator",
    "build_gan",
    "build_generator",
    "build_lstm_forecaster",
    "build_rnn_classifier",
    "build_vocabulary",
    "load_digits_28x28",
    "load_mnist",
    "load_sentiment_sample",
    "make_sine_series",
    "read_sentiment_sample",
    "texts_to_sequences",
]
