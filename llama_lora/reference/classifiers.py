"""Reference classifiers: a small CNN for images and an RNN/LSTM/GRU for token sequences.

Both are the architectures of the classic Keras tutorials, written once, validated and
compiled, so they can be trained side by side with a LoRA fine-tune as a baseline.
"""

from __future__ import annotations

import keras
from keras import layers

from llama_lora.reference._validation import (
    require_choice,
    require_positive_int,
    require_shape,
)

RNN_CELLS = ("lstm", "gru", "simple")
_RECURRENT_LAYERS = {"lstm": layers.LSTM, "gru": layers.GRU, "simple": layers.SimpleRNN}

# Three 3x3 "valid" convolutions and two 2x2 poolings shrink each side as
# s -> s-2 -> //2 -> -2 -> //2 -> -2; 18 is the smallest side that keeps 1 pixel at the end.
_CNN_MIN_SIDE = 18


def _cnn_output_side(side: int) -> int:
    """Side length after the CNN's conv/pool stack (may be <= 0 for too-small inputs)."""
    side = (side - 2) // 2
    side = (side - 2) // 2
    return side - 2


def build_cnn(
    input_shape: tuple[int, int, int] = (28, 28, 1), num_classes: int = 10
) -> keras.Model:
    """Build and compile the classic small image classifier (the TensorFlow CNN tutorial's).

    Architecture::

        Input (H, W, C)
        Conv2D 32 3x3 relu -> MaxPool 2x2
        Conv2D 64 3x3 relu -> MaxPool 2x2
        Conv2D 64 3x3 relu
        Flatten -> Dense 64 relu -> Dense num_classes softmax

    Convolutions share weights across positions, so a few thousand parameters learn stroke
    detectors that work anywhere in the image; it reaches about 98% on 28x28 digits.

    Args:
        input_shape: ``(height, width, channels)``; each side at least 18 pixels.
        num_classes: Number of classes (at least 2); labels are integers ``0..num_classes-1``.

    Returns:
        A model compiled with Adam, sparse categorical cross-entropy and accuracy.

    Raises:
        ValueError: If a size is not a positive integer, a side is below 18, or
            ``num_classes`` is below 2.
    """
    height, width, channels = require_shape("input_shape", input_shape, rank=3)
    if min(height, width) < _CNN_MIN_SIDE:
        raise ValueError(
            f"input_shape sides must be at least {_CNN_MIN_SIDE} pixels for three 3x3 "
            f"convolutions and two poolings, got {tuple(input_shape)!r}"
        )
    num_classes = _require_classes(num_classes)
    model = keras.Sequential(
        [
            keras.Input(shape=(height, width, channels)),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.Flatten(),
            layers.Dense(64, activation="relu"),
            layers.Dense(num_classes, activation="softmax"),
        ],
        name="cnn",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def build_rnn_classifier(
    num_words: int = 10000,
    max_length: int = 100,
    cell: str = "lstm",
    *,
    num_classes: int = 2,
    embedding_dim: int = 128,
    units: int = 64,
) -> keras.Model:
    """Build and compile a recurrent text classifier over integer token sequences.

    Architecture::

        Input (max_length,) int token ids, 0 = padding
        Embedding num_words x embedding_dim (mask_zero: padding is skipped)
        LSTM | GRU | SimpleRNN with ``units`` (last hidden state)
        Dense 1 sigmoid (num_classes == 2) | Dense num_classes softmax

    The recurrent layer reads the review token by token and its final state summarises it;
    this is the pre-transformer baseline to compare a LoRA-tuned LLM against on the same
    sentiment data (see ``texts_to_sequences``). ``"lstm"`` and ``"gru"`` gate their state
    and keep information over long inputs; ``"simple"`` is the plain RNN that forgets quickly,
    kept for comparison.

    Args:
        num_words: Vocabulary size, including index 0 (padding) and 1 (out of vocabulary).
        max_length: Length every sequence is padded or truncated to.
        cell: Recurrent layer: one of ``"lstm"``, ``"gru"``, ``"simple"``.
        num_classes: 2 for binary labels 0/1, more for integer labels ``0..num_classes-1``.
        embedding_dim: Size of each token vector.
        units: Size of the recurrent state.

    Returns:
        A model compiled with Adam, (binary or sparse categorical) cross-entropy and accuracy.

    Raises:
        ValueError: If a size is not a positive integer, ``num_words`` is below 3 (padding,
            out-of-vocabulary and one word), ``num_classes`` is below 2, or ``cell`` is unknown.
    """
    num_words = require_positive_int("num_words", num_words)
    if num_words < 3:
        raise ValueError(f"num_words must be at least 3 (padding, OOV, one word), got {num_words}")
    max_length = require_positive_int("max_length", max_length)
    cell = require_choice("cell", cell, RNN_CELLS)
    num_classes = _require_classes(num_classes)
    embedding_dim = require_positive_int("embedding_dim", embedding_dim)
    units = require_positive_int("units", units)
    binary = num_classes == 2
    model = keras.Sequential(
        [
            keras.Input(shape=(max_length,), dtype="int32"),
            layers.Embedding(num_words, embedding_dim, mask_zero=True),
            _RECURRENT_LAYERS[cell](units),
            layers.Dense(1, activation="sigmoid")
            if binary
            else layers.Dense(num_classes, activation="softmax"),
        ],
        name=f"{cell}_classifier",
    )
    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss="binary_crossentropy" if binary else "sparse_categorical_crossentropy",
        metrics=["accuracy"],
    )
    return model


def _require_classes(num_classes: object) -> int:
    num_classes = require_positive_int("num_classes", num_classes)
    if num_classes < 2:
        raise ValueError(f"num_classes must be at least 2, got {num_classes}")
    return num_classes
