"""Offline data for the reference models: digits, MNIST from a local file, sine series.

Nothing here downloads. Every loader returns the ``keras.datasets`` layout,
``(x_train, y_train), (x_test, y_test)``, as float32/int arrays with a deterministic split.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from llama_lora.reference._validation import (
    require_choice,
    require_fraction,
    require_positive_int,
)

ArrayPair = tuple[np.ndarray, np.ndarray]
VALUE_RANGES = ("unit", "tanh")
IMAGE_SIDE = 28


def load_digits_28x28(
    value_range: str = "unit", *, test_size: float = 0.2, seed: int = 0
) -> tuple[ArrayPair, ArrayPair]:
    """scikit-learn's bundled handwritten digits, resized to MNIST's 28x28x1 layout.

    The 1,797 8x8 digits (values 0..16) ship inside scikit-learn, so this works offline. Each
    is upsampled 3x with bilinear interpolation to 24x24 and padded by 2 pixels per side,
    which mirrors MNIST's centred digit inside a 28x28 frame.

    Args:
        value_range: ``"unit"`` scales to [0, 1] (for the CNN); ``"tanh"`` to [-1, 1] (for
            the GAN, whose generator ends in tanh).
        test_size: Fraction held out, stratified by digit.
        seed: Seed of the split.

    Returns:
        ``(x_train, y_train), (x_test, y_test)``: images ``(N, 28, 28, 1)`` float32, labels
        ``(N,)`` int32.

    Raises:
        ValueError: For an unknown ``value_range`` or ``test_size`` outside (0, 1).
    """
    from scipy.ndimage import zoom
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    value_range = require_choice("value_range", value_range, VALUE_RANGES)
    test_size = require_fraction("test_size", test_size)
    digits = load_digits()
    images = zoom(digits.images / 16.0, (1, 3, 3), order=1).clip(0.0, 1.0)  # (N, 24, 24)
    images = np.pad(images, ((0, 0), (2, 2), (2, 2)))[..., None]  # (N, 28, 28, 1)
    images = _scale(images.astype("float32"), value_range)
    x_train, x_test, y_train, y_test = train_test_split(
        images,
        digits.target.astype("int32"),
        test_size=test_size,
        random_state=seed,
        stratify=digits.target,
    )
    return (x_train, y_train), (x_test, y_test)


def load_mnist(path: str | Path, value_range: str = "unit") -> tuple[ArrayPair, ArrayPair]:
    """MNIST from a local ``mnist.npz`` (the file ``keras.datasets.mnist`` downloads).

    Args:
        path: Path to ``mnist.npz`` with arrays ``x_train``, ``y_train``, ``x_test``,
            ``y_test`` (uint8 images 28x28).
        value_range: ``"unit"`` for [0, 1] or ``"tanh"`` for [-1, 1].

    Returns:
        ``(x_train, y_train), (x_test, y_test)`` with images ``(N, 28, 28, 1)`` float32.

    Raises:
        FileNotFoundError: If ``path`` does not exist.
        ValueError: If the file lacks one of the four arrays or ``value_range`` is unknown.
    """
    value_range = require_choice("value_range", value_range, VALUE_RANGES)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"no MNIST file at {path} (expected keras' mnist.npz)")
    # allow_pickle=False: an .npz from elsewhere must not be able to run code on load.
    with np.load(path, allow_pickle=False) as archive:
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(archive.files)
        if missing:
            raise ValueError(f"{path} lacks arrays {sorted(missing)}; found {archive.files}")
        arrays = {key: archive[key] for key in ("x_train", "y_train", "x_test", "y_test")}
    x_train, x_test = (
        _scale((arrays[key] / 255.0).astype("float32")[..., None], value_range)
        for key in ("x_train", "x_test")
    )
    return (x_train, arrays["y_train"].astype("int32")), (x_test, arrays["y_test"].astype("int32"))


def make_sine_series(
    n_samples: int = 2000,
    n_steps: int = 10,
    n_features: int = 5,
    *,
    noise: float = 0.05,
    test_size: float = 0.2,
    seed: int = 0,
) -> tuple[ArrayPair, ArrayPair]:
    """Windows of noisy multivariate sine waves and the next value of the first one.

    Feature ``k`` of a sample is ``sin(2 * pi * f_k * t + phase) + noise`` with fixed
    frequencies ``f_k`` (one cycle per 20, 30, ... steps) and a random phase per sample, so
    every window is a different stretch of the same dynamics. The target is feature 0 one
    step after the window, without noise. The naive forecast (last observed value of feature
    0) is off by the step's change plus the noise; a model that knows the dynamics is not.

    Args:
        n_samples: Number of windows (train and test together).
        n_steps: Window length.
        n_features: Number of series per step.
        noise: Standard deviation of the Gaussian noise added to the inputs.
        test_size: Fraction of windows held out (the last ones; windows are independent).
        seed: Seed of the phases and the noise.

    Returns:
        ``(x_train, y_train), (x_test, y_test)`` with windows ``(N, n_steps, n_features)``
        and targets ``(N, 1)``, float32.

    Raises:
        ValueError: If a size is not a positive integer, ``noise`` is negative or
            ``test_size`` is outside (0, 1).
    """
    n_samples = require_positive_int("n_samples", n_samples)
    n_steps = require_positive_int("n_steps", n_steps)
    n_features = require_positive_int("n_features", n_features)
    test_size = require_fraction("test_size", test_size)
    if not noise >= 0:
        raise ValueError(f"noise must be a non-negative standard deviation, got {noise!r}")
    n_test = int(round(n_samples * test_size))
    if not 0 < n_test < n_samples:
        raise ValueError(f"test_size={test_size} leaves an empty split of {n_samples} samples")
    rng = np.random.default_rng(seed)
    frequencies = 1.0 / (20.0 + 10.0 * np.arange(n_features))  # (F,) cycles per step
    phases = rng.uniform(0.0, 2.0 * np.pi, size=(n_samples, 1, 1))  # (N, 1, 1)
    steps = np.arange(n_steps + 1)[None, :, None]  # (1, T+1, 1)
    waves = np.sin(2.0 * np.pi * frequencies * steps + phases)  # (N, T+1, F)
    x = waves[:, :n_steps] + rng.normal(0.0, noise, size=(n_samples, n_steps, n_features))
    y = waves[:, n_steps, :1]  # (N, 1)
    x, y = x.astype("float32"), y.astype("float32")
    split = n_samples - n_test
    return (x[:split], y[:split]), (x[split:], y[split:])


def _scale(images: np.ndarray, value_range: str) -> np.ndarray:
    """Map images in [0, 1] to the requested range."""
    return images if value_range == "unit" else images * 2.0 - 1.0
