"""Offline data helpers: digits, local MNIST, sine series, text sequences."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("tensorflow")
pytest.importorskip("keras")

from llama_lora import reference  # noqa: E402
from llama_lora.reference.text import OOV, PAD  # noqa: E402


@pytest.mark.parametrize("value_range, low, high", [("unit", 0.0, 1.0), ("tanh", -1.0, 1.0)])
def test_digits_are_28x28_in_the_requested_range(value_range, low, high):
    (x_train, y_train), (x_test, y_test) = reference.load_digits_28x28(value_range)
    assert x_train.shape[1:] == x_test.shape[1:] == (28, 28, 1)
    assert x_train.dtype == np.float32
    assert len(x_train) + len(x_test) == 1797 and len(x_test) == 360
    assert x_train.min() == pytest.approx(low) and x_train.max() == pytest.approx(high)
    # The 2-pixel frame around the 24x24 upsampled digit is background.
    assert np.all(x_train[:, :2] == low) and np.all(x_train[:, :, -2:] == low)
    # Stratified: every digit in both splits.
    assert set(y_train) == set(y_test) == set(range(10))


def test_digits_split_depends_only_on_the_seed():
    (first, _), _ = reference.load_digits_28x28(seed=1)
    (again, _), _ = reference.load_digits_28x28(seed=1)
    (other, _), _ = reference.load_digits_28x28(seed=2)
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)


@pytest.fixture
def fake_mnist(tmp_path):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.integers(0, 256, (6, 28, 28), dtype=np.uint8),
        "y_train": rng.integers(0, 10, 6).astype(np.uint8),
        "x_test": rng.integers(0, 256, (3, 28, 28), dtype=np.uint8),
        "y_test": rng.integers(0, 10, 3).astype(np.uint8),
    }
    path = tmp_path / "mnist.npz"
    np.savez(path, **arrays)
    return path, arrays


@pytest.mark.parametrize(
    "value_range, scale, shift", [("unit", 1 / 255, 0.0), ("tanh", 2 / 255, -1.0)]
)
def test_load_mnist_scales_a_local_file(fake_mnist, value_range, scale, shift):
    path, arrays = fake_mnist
    (x_train, y_train), (x_test, y_test) = reference.load_mnist(path, value_range)
    assert x_train.shape == (6, 28, 28, 1) and x_test.shape == (3, 28, 28, 1)
    np.testing.assert_allclose(x_test[..., 0], arrays["x_test"] * scale + shift, atol=1e-6)
    np.testing.assert_array_equal(y_train, arrays["y_train"])


def test_load_mnist_rejects_missing_file_and_arrays(tmp_path):
    with pytest.raises(FileNotFoundError, match="nothing.npz"):
        reference.load_mnist(tmp_path / "nothing.npz")
    partial = tmp_path / "partial.npz"
    np.savez(partial, x_train=np.zeros((1, 28, 28), np.uint8))
    with pytest.raises(ValueError, match="y_test"):
        reference.load_mnist(partial)


def test_sine_series_target_continues_the_first_wave():
    (x_train, y_train), (x_test, y_test) = reference.make_sine_series(
        n_samples=100, n_steps=6, n_features=3, noise=0.0, test_size=0.25
    )
    assert x_train.shape == (75, 6, 3) and y_train.shape == (75, 1) and x_test.shape == (25, 6, 3)
    # Noise-free sin(a + w) = 2 cos(w) sin(a) - sin(a - w), with w = 2 pi / 20 for feature 0.
    omega = 2 * np.pi / 20
    predicted = 2 * np.cos(omega) * x_test[:, -1, 0] - x_test[:, -2, 0]
    np.testing.assert_allclose(predicted, y_test[:, 0], atol=1e-5)


def test_sine_series_noise_only_touches_inputs():
    clean = reference.make_sine_series(n_samples=50, noise=0.0, seed=3)
    noisy = reference.make_sine_series(n_samples=50, noise=0.1, seed=3)
    np.testing.assert_array_equal(clean[0][1], noisy[0][1])
    residual = noisy[0][0] - clean[0][0]
    assert 0.05 < residual.std() < 0.15


def test_vocabulary_orders_by_count_then_alphabet():
    vocabulary = reference.build_vocabulary(["b a c", "c b", "c d"], num_words=5)
    assert vocabulary == [PAD, OOV, "c", "b", "a"]


def test_texts_to_sequences_pads_front_and_maps_unknown_words_to_oov():
    vocabulary = [PAD, OOV, "good", "movie"]
    sequences, returned = reference.texts_to_sequences(
        ["Good movie!", "a GOOD, good plot", "movie " * 9], vocabulary, max_length=4
    )
    assert returned == vocabulary
    assert sequences.dtype == np.int32 and sequences.shape == (3, 4)
    np.testing.assert_array_equal(sequences[0], [0, 0, 2, 3])
    np.testing.assert_array_equal(sequences[1], [1, 2, 2, 1])
    np.testing.assert_array_equal(sequences[2], [3, 3, 3, 3])  # truncated to the last 4


def test_texts_to_sequences_builds_a_vocabulary_when_none_given():
    sequences, vocabulary = reference.texts_to_sequences(["x y y", "y z"], max_length=3)
    assert vocabulary == [PAD, OOV, "y", "x", "z"]
    np.testing.assert_array_equal(sequences, [[3, 2, 2], [0, 2, 4]])


def test_texts_to_sequences_defaults_to_the_bundled_sentiment_sample(sentiment_sample):
    texts, labels = reference.read_sentiment_sample()
    sequences, vocabulary = reference.texts_to_sequences(max_length=20)
    assert sequences.shape == (len(texts), 20)
    assert set(np.unique(labels)) == {0, 1}
    assert sequences.max() < len(vocabulary) and (sequences[:, -1] > 0).all()


def test_sentiment_split_is_stratified_and_vocabulary_comes_from_train_only(sentiment_sample):
    (x_train, y_train), (x_test, y_test), vocabulary = reference.load_sentiment_sample(
        max_length=512
    )
    texts, labels = reference.read_sentiment_sample(sentiment_sample)
    assert len(x_train) + len(x_test) == len(texts)
    assert abs(y_test.mean() - labels.mean()) < 0.1
    # Every vocabulary word occurs in the training sequences: none was learnt from held-out text.
    assert set(np.unique(x_train)) >= set(range(2, len(vocabulary)))


def test_read_sentiment_sample_rejects_unknown_labels(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"text": "fine", "label": "neutral"}) + "\n")
    with pytest.raises(ValueError, match="neutral"):
        reference.read_sentiment_sample(path)
