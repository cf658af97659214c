"""Reference time-series model: an LSTM that forecasts the next value of a series."""

from __future__ import annotations

import keras
from keras import layers

from llama_lora.reference._validation import require_positive_int


def build_lstm_forecaster(n_steps: int = 10, n_features: int = 5, units: int = 50) -> keras.Model:
    """Build and compile a one-step-ahead LSTM forecaster.

    Architecture::

        Input (n_steps, n_features): a window of past observations
        LSTM units (last hidden state)
        Dense 1: the next value of the target series

    The LSTM's gated state carries phase and trend through the window, so it beats the naive
    "tomorrow equals today" forecast on smooth periodic signals (see ``make_sine_series``).
    It is an LSTM and is named so (the tutorial version called it "RNN").

    Args:
        n_steps: Length of the input window.
        n_features: Number of observed series per time step.
        units: Size of the LSTM state.

    Returns:
        A model compiled with Adam, mean squared error and mean absolute error.

    Raises:
        ValueError: If a size is not a positive integer.
    """
    n_steps = require_positive_int("n_steps", n_steps)
    n_features = require_positive_int("n_features", n_features)
    units = require_positive_int("units", units)
    model = keras.Sequential(
        [
            keras.Input(shape=(n_steps, n_features)),
            layers.LSTM(units),
            layers.Dense(1),
        ],
        name="lstm_forecaster",
    )
    model.compile(optimizer=keras.optimizers.Adam(1e-3), loss="mse", metrics=["mae"])
    return model
