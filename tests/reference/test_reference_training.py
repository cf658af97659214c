"""Each reference model learns its task on offline data, on a CPU, in seconds."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

from llama_lora import reference  # noqa: E402

pytestmark = pytest.mark.slow


def test_cnn_reaches_90_percent_on_held_out_digits():
    (x_train, y_train), (x_test, y_test) = reference.load_digits_28x28()
    model = reference.build_cnn()
    model.fit(x_train, y_train, epochs=5, batch_size=32, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    assert accuracy >= 0.90


def test_lstm_forecaster_beats_the_naive_last_value_forecast():
    (x_train, y_train), (x_test, y_test) = reference.make_sine_series(n_samples=800)
    model = reference.build_lstm_forecaster(n_steps=10, n_features=5, units=16)
    model.fit(x_train, y_train, epochs=5, batch_size=32, verbose=0)
    mse = np.mean((model.predict(x_test, verbose=0) - y_test) ** 2)
    naive_mse = np.mean((x_test[:, -1, :1] - y_test) ** 2)
    assert mse < 0.5 * naive_mse


def test_rnn_classifier_beats_the_majority_class_on_the_sentiment_sample(sentiment_sample):
    # A small vocabulary and LSTM: the ~265 training sentences are memorised by bigger ones.
    (x_train, y_train), (x_test, y_test), vocabulary = reference.load_sentiment_sample(
        sentiment_sample, num_words=300, max_length=48
    )
    model = reference.build_rnn_classifier(len(vocabulary), 48, "lstm", embedding_dim=16, units=16)
    model.fit(x_train, y_train, epochs=5, batch_size=16, verbose=0)
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    majority = np.mean(y_test == np.bincount(y_train).argmax())
    assert accuracy > majority


def test_one_gan_epoch_updates_both_networks_and_generates_valid_images():
    (x_train, _), _ = reference.load_digits_28x28("tanh")
    gan = reference.build_gan(seed=0)
    before = {
        "generator": [w.copy() for w in gan.generator.get_weights()],
        "discriminator": [w.copy() for w in gan.discriminator.get_weights()],
    }
    history = gan.fit(x_train[:256], epochs=1, batch_size=64, verbose=0)
    for name, network in [("generator", gan.generator), ("discriminator", gan.discriminator)]:
        after = network.get_weights()
        changed = [
            not np.array_equal(old, new) for old, new in zip(before[name], after, strict=True)
        ]
        # Every trainable kernel moved (non-trainable BatchNorm statistics move too).
        assert all(changed[i] for i, w in enumerate(network.weights) if w.trainable), name
    for key in ("d_loss", "g_loss"):
        assert np.isfinite(history.history[key]).all() and history.history[key][0] > 0
    images = gan.generate(5)
    assert images.shape == (5, 28, 28, 1)
    assert images.min() >= -1.0 and images.max() <= 1.0
    assert images.std() > 0  # not a constant image


def test_gan_generate_is_reproducible_with_a_seed():
    gan = reference.build_gan(latent_dim=16)
    np.testing.assert_array_equal(gan.generate(3, seed=5), gan.generate(3, seed=5))
    assert not np.array_equal(gan.generate(3, seed=5), gan.generate(3, seed=6))
