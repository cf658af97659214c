"""Builders: output shapes, the architectures the docs promise, bad arguments, save/load."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("tensorflow")  # the [reference] extra (importing it also imports keras)
keras = pytest.importorskip("keras")

from llama_lora import reference  # noqa: E402
from llama_lora.reference.train import TrainSettings  # noqa: E402

SHAPE_CASES = [
    # (id, build, input array, expected output shape)
    ("cnn", lambda: reference.build_cnn(), np.zeros((2, 28, 28, 1), "float32"), (2, 10)),
    (
        "cnn_rgb_5",
        lambda: reference.build_cnn((32, 32, 3), 5),
        np.zeros((2, 32, 32, 3), "float32"),
        (2, 5),
    ),
    *[
        (
            f"rnn_{cell}",
            lambda cell=cell: reference.build_rnn_classifier(50, 12, cell),
            np.ones((3, 12), "int32"),
            (3, 1),
        )
        for cell in reference.RNN_CELLS
    ],
    (
        "rnn_3_classes",
        lambda: reference.build_rnn_classifier(50, 12, "gru", num_classes=3),
        np.ones((3, 12), "int32"),
        (3, 3),
    ),
    ("lstm", lambda: reference.build_lstm_forecaster(), np.zeros((4, 10, 5), "float32"), (4, 1)),
    (
        "generator",
        lambda: reference.build_generator(100, (28, 28, 1)),
        np.zeros((2, 100), "float32"),
        (2, 28, 28, 1),
    ),
    (
        "generator_rgb",
        lambda: reference.build_generator(16, (32, 32, 3)),
        np.zeros((2, 16), "float32"),
        (2, 32, 32, 3),
    ),
    (
        "discriminator",
        lambda: reference.build_discriminator(),
        np.zeros((2, 28, 28, 1), "float32"),
        (2, 1),
    ),
]


@pytest.mark.parametrize(
    "build, inputs, expected", [case[1:] for case in SHAPE_CASES], ids=[c[0] for c in SHAPE_CASES]
)
def test_builder_output_shape(build, inputs, expected):
    outputs = np.asarray(build()(inputs, training=False))
    assert outputs.shape == expected
    assert np.isfinite(outputs).all()


@pytest.mark.parametrize(
    "build, inputs",
    [
        (reference.build_cnn, np.random.default_rng(0).random((3, 28, 28, 1), "float32")),
        (
            lambda: reference.build_rnn_classifier(30, 8, num_classes=4),
            np.random.default_rng(0).integers(1, 30, (3, 8)).astype("int32"),
        ),
    ],
    ids=["cnn", "rnn_softmax"],
)
def test_softmax_classifiers_output_probabilities(build, inputs):
    probabilities = np.asarray(build()(inputs))
    np.testing.assert_allclose(probabilities.sum(axis=-1), 1.0, rtol=1e-5)
    assert (probabilities >= 0).all()


def test_cnn_has_the_documented_layers():
    layers = reference.build_cnn().layers
    convolutions = [layer.filters for layer in layers if isinstance(layer, keras.layers.Conv2D)]
    dense = [layer.units for layer in layers if isinstance(layer, keras.layers.Dense)]
    pools = [layer for layer in layers if isinstance(layer, keras.layers.MaxPooling2D)]
    assert convolutions == [32, 64, 64]
    assert dense == [64, 10]
    assert len(pools) == 2


@pytest.mark.parametrize(
    "cell, layer_type",
    [("lstm", "LSTM"), ("gru", "GRU"), ("simple", "SimpleRNN")],
)
def test_rnn_cell_selects_the_recurrent_layer(cell, layer_type):
    model = reference.build_rnn_classifier(20, 5, cell)
    recurrent = [type(layer).__name__ for layer in model.layers][1]
    assert recurrent == layer_type
    assert model.layers[0].output_dim == 128 and model.layers[1].units == 64


def test_generator_upsamples_twice_to_the_discriminator_input():
    gan = reference.build_gan()
    spatial = [
        layer.output.shape[1:3]
        for layer in gan.generator.layers
        if isinstance(layer, (keras.layers.Reshape, keras.layers.Conv2DTranspose))
    ]
    assert [tuple(shape) for shape in spatial] == [(7, 7), (14, 14), (28, 28)]
    assert gan.generator.output_shape[1:] == gan.discriminator.input_shape[1:]
    assert gan.generator.layers[-1].activation.__name__ == "tanh"


BAD_ARGUMENTS = [
    (reference.build_cnn, {"num_classes": 0}, "num_classes"),
    (reference.build_cnn, {"num_classes": 1}, "num_classes"),
    (reference.build_cnn, {"input_shape": (28, 28)}, "input_shape"),
    (reference.build_cnn, {"input_shape": (28, 0, 1)}, "input_shape"),
    (reference.build_cnn, {"input_shape": (16, 16, 1)}, "at least 18"),
    (reference.build_rnn_classifier, {"num_words": 0}, "num_words"),
    (reference.build_rnn_classifier, {"max_length": -3}, "max_length"),
    (reference.build_rnn_classifier, {"cell": "transformer"}, "'transformer'"),
    (reference.build_rnn_classifier, {"units": 0}, "units"),
    (reference.build_lstm_forecaster, {"n_steps": 0}, "n_steps"),
    (reference.build_lstm_forecaster, {"n_features": 2.5}, "n_features"),
    (reference.build_lstm_forecaster, {"units": -50}, "units"),
    (reference.build_gan, {"latent_dim": 0}, "latent_dim"),
    (reference.build_gan, {"image_shape": (30, 30, 1)}, "divisible by 4"),
    (reference.build_gan, {"label_smoothing": 1.0}, "label_smoothing"),
    (reference.build_gan, {"learning_rate": 0.0}, "learning_rate"),
    (reference.load_digits_28x28, {"value_range": "bytes"}, "'unit'"),
    (reference.load_digits_28x28, {"test_size": 1.5}, "test_size"),
    (reference.make_sine_series, {"n_samples": 0}, "n_samples"),
    (reference.make_sine_series, {"noise": -0.1}, "noise"),
    (reference.texts_to_sequences, {"texts": ["a b"], "max_length": 0}, "max_length"),
    (reference.texts_to_sequences, {"texts": "one string"}, "single str"),
    (reference.build_vocabulary, {"texts": ["a"], "num_words": 2}, "num_words"),
    (TrainSettings, {"model": "vit"}, "'vit'"),
    (TrainSettings, {"model": "cnn", "epochs": 0}, "epochs"),
    (TrainSettings, {"model": "lstm", "mnist_path": "mnist.npz"}, "mnist_path"),
]


@pytest.mark.parametrize(
    "function, kwargs, message",
    BAD_ARGUMENTS,
    ids=[f"{function.__name__}-{'-'.join(kwargs)}" for function, kwargs, _ in BAD_ARGUMENTS],
)
def test_bad_arguments_raise_value_error_naming_them(function, kwargs, message):
    with pytest.raises(ValueError, match=message):
        function(**kwargs)


SAVE_CASES = [
    # (id, build, inputs, fit data): one training step first, so optimizer state is saved too
    ("cnn", reference.build_cnn, lambda rng: rng.random((4, 28, 28, 1), dtype="float32"),
     lambda x, rng: (x, rng.integers(0, 10, len(x)))),
    ("rnn", lambda: reference.build_rnn_classifier(40, 9, "gru"),
     lambda rng: rng.integers(0, 40, (4, 9)).astype("int32"),
     lambda x, rng: (x, rng.integers(0, 2, len(x)))),
    ("lstm", reference.build_lstm_forecaster,
     lambda rng: rng.normal(size=(4, 10, 5)).astype("float32"),
     lambda x, rng: (x, rng.normal(size=(len(x), 1)))),
    ("gan", lambda: reference.build_gan(latent_dim=8, seed=3),
     lambda rng: rng.normal(size=(4, 8)).astype("float32"),
     None),  # GAN.compile builds both optimizers, so there is state to save without a step
]  # fmt: skip


@pytest.mark.parametrize(
    "build, make_inputs, make_fit_data", [c[1:] for c in SAVE_CASES], ids=[c[0] for c in SAVE_CASES]
)
def test_save_and_load_give_identical_predictions(tmp_path, build, make_inputs, make_fit_data):
    rng = np.random.default_rng(0)
    model = build()
    inputs = make_inputs(rng)
    if make_fit_data is not None:
        model.fit(*make_fit_data(inputs, rng), epochs=1, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.saving.load_model(path)
    assert type(loaded) is type(model)
    np.testing.assert_array_equal(
        loaded.predict(inputs, verbose=0), model.predict(inputs, verbose=0)
    )


def test_same_seed_builds_the_same_weights():
    keras.utils.set_random_seed(7)
    first = reference.build_cnn().get_weights()
    keras.utils.set_random_seed(7)
    second = reference.build_cnn().get_weights()
    keras.utils.set_random_seed(8)
    third = reference.build_cnn().get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(first, second, strict=True))
    assert not np.array_equal(first[0], third[0])
