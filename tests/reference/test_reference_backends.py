"""Backends: the models run under TensorFlow and PyTorch; ``import llama_lora`` loads neither."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import llama_lora

pytestmark = pytest.mark.slow

REPO_ROOT = Path(llama_lora.__file__).resolve().parents[1]

# Builds, trains a step and predicts; under torch also a GAN step, whose train_step has a
# backend-specific gradient path (the in-process tests already train the GAN on TensorFlow).
SCRIPT = textwrap.dedent(
    """
    import os

    import numpy as np
    from llama_lora import reference
    import keras

    assert keras.backend.backend() == "{backend}", keras.backend.backend()
    assert os.environ["KERAS_BACKEND"] == "{backend}"
    keras.utils.set_random_seed(0)
    (x_train, y_train), (x_test, _) = reference.make_sine_series(n_samples=64)
    model = reference.build_lstm_forecaster(units=8)
    model.fit(x_train, y_train, epochs=1, verbose=0)
    assert model.predict(x_test, verbose=0).shape == (len(x_test), 1)
    if keras.backend.backend() == "torch":
        gan = reference.build_gan(latent_dim=8, seed=0)
        before = [w.copy() for w in gan.generator.get_weights()]
        history = gan.fit(np.zeros((16, 28, 28, 1), "float32"), batch_size=8, verbose=0)
        assert np.isfinite(history.history["g_loss"]).all()
        after = gan.generator.get_weights()
        assert any(not np.array_equal(a, b) for a, b in zip(before, after))
        assert gan.generate(2).shape == (2, 28, 28, 1)
    print("ok", keras.backend.backend())
    """
)


def _run(code: str, keras_backend: str | None = None) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter with ``KERAS_BACKEND`` set (or unset if None)."""
    environment = {key: value for key, value in os.environ.items() if key != "KERAS_BACKEND"}
    environment["TF_CPP_MIN_LOG_LEVEL"] = "2"
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])
    )
    if keras_backend is not None:
        environment["KERAS_BACKEND"] = keras_backend
    return subprocess.run(
        [sys.executable, "-c", code],
        env=environment,
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO_ROOT,
    )


@pytest.mark.parametrize(
    "keras_backend, expected",
    [(None, "tensorflow"), ("torch", "torch")],
    ids=["unset-defaults-to-tensorflow", "torch-is-kept"],
)
def test_models_build_train_and_predict_under_backend(keras_backend, expected):
    pytest.importorskip("tensorflow")
    pytest.importorskip("keras")
    pytest.importorskip(expected)
    result = _run(SCRIPT.format(backend=expected), keras_backend)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"ok {expected}" in result.stdout


def test_import_llama_lora_does_not_import_keras_or_tensorflow():
    result = _run(
        "import sys, llama_lora\n"
        "loaded = sorted({'keras', 'tensorflow'} & set(sys.modules))\n"
        "assert not loaded, loaded\n"
    )
    assert result.returncode == 0, result.stderr[-3000:]
