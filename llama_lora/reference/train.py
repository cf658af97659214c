"""Train one reference model on its offline data: ``python -m llama_lora.reference.train cnn``.

Each model trains with Keras' progress bar, is scored on held-out data next to a trivial
baseline (so the number means something), and is saved as ``<output-dir>/<model>.keras``. The
RNN also writes its vocabulary as JSON (needed to encode new text); the GAN writes a PNG grid
of generated digits.

Examples::

    python -m llama_lora.reference.train cnn --epochs 5
    python -m llama_lora.reference.train gan --epochs 50 --output-dir runs/gan
    python -m llama_lora.reference.train cnn --mnist ~/.keras/datasets/mnist.npz
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import llama_lora.reference as reference
from llama_lora.reference._validation import require_choice, require_positive_int

MODELS = ("cnn", "rnn", "lstm", "gan")
DEFAULT_EPOCHS = {"cnn": 8, "rnn": 5, "lstm": 20, "gan": 40}
DEFAULT_BATCH_SIZE = {"cnn": 64, "rnn": 16, "lstm": 64, "gan": 64}


@dataclass
class TrainSettings:
    """What to train and where to write it."""

    model: str
    """Which reference model: one of ``MODELS``."""
    epochs: int | None = None
    """Passes over the training data; ``None`` for the model's default (``DEFAULT_EPOCHS``)."""
    batch_size: int | None = None
    """Examples per step; ``None`` for the model's default (``DEFAULT_BATCH_SIZE``)."""
    output_dir: Path = Path("reference_runs")
    """Directory for the saved model and artefacts (created if missing)."""
    seed: int = 0
    """Seed of weights, data split, dropout and noise (``keras.utils.set_random_seed``)."""
    mnist_path: Path | None = None
    """Local ``mnist.npz`` to use instead of the bundled digits (cnn and gan only)."""
    verbose: int = 1
    """Keras verbosity: 0 silent, 1 progress bar, 2 one line per epoch."""

    def __post_init__(self) -> None:
        self.model = require_choice("model", self.model, MODELS)
        self.epochs = require_positive_int(
            "epochs", DEFAULT_EPOCHS[self.model] if self.epochs is None else self.epochs
        )
        self.batch_size = require_positive_int(
            "batch_size",
            DEFAULT_BATCH_SIZE[self.model] if self.batch_size is None else self.batch_size,
        )
        self.output_dir = Path(self.output_dir)
        if self.mnist_path is not None and self.model not in ("cnn", "gan"):
            raise ValueError(
                f"mnist_path applies to 'cnn' and 'gan' only, got model {self.model!r}"
            )
        if self.verbose not in (0, 1, 2):
            raise ValueError(f"verbose must be one of 0, 1, 2; got {self.verbose!r}")


@dataclass
class TrainResult:
    """The held-out score of a trained model, its baseline, and the files written."""

    model: str
    metric_name: str
    metric: float
    baseline_name: str | None = None
    baseline: float | None = None
    files: list[Path] = field(default_factory=list)

    def summary(self) -> str:
        line = f"{self.model}: held-out {self.metric_name} = {self.metric:.4g}"
        if self.baseline_name is not None:
            line += f" ({self.baseline_name} = {self.baseline:.4g})"
        return line + "".join(f"\nsaved {path}" for path in self.files)


def train(settings: TrainSettings) -> TrainResult:
    """Train, score and save the model ``settings.model``; see the module docstring."""
    import keras

    keras.utils.set_random_seed(settings.seed)
    settings.output_dir.mkdir(parents=True, exist_ok=True)
    return _TRAINERS[settings.model](settings)


def _digits(settings: TrainSettings, value_range: str):
    if settings.mnist_path is not None:
        return reference.load_mnist(settings.mnist_path, value_range=value_range)
    return reference.load_digits_28x28(value_range, seed=settings.seed)


def _fit_kwargs(settings: TrainSettings) -> dict:
    return {
        "epochs": settings.epochs,
        "batch_size": settings.batch_size,
        "verbose": settings.verbose,
    }


def _majority_accuracy(y_train: np.ndarray, y_test: np.ndarray) -> float:
    """Accuracy of always predicting the most frequent training label."""
    majority = np.bincount(y_train).argmax()
    return float(np.mean(y_test == majority))


def _train_cnn(settings: TrainSettings) -> TrainResult:
    (x_train, y_train), (x_test, y_test) = _digits(settings, "unit")
    model = reference.build_cnn(x_train.shape[1:], num_classes=int(y_train.max()) + 1)
    model.fit(x_train, y_train, **_fit_kwargs(settings))
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    path = settings.output_dir / "cnn.keras"
    model.save(path)
    baseline = _majority_accuracy(y_train, y_test)
    return TrainResult("cnn", "accuracy", accuracy, "majority class", baseline, [path])


def _train_rnn(settings: TrainSettings) -> TrainResult:
    # The bundled sample has about 265 training sentences. With the builder's defaults (10,000
    # words, 128-d embeddings, 64 units) the LSTM memorises them and scores chance on held-out
    # text; the 300 most frequent words and a 16-unit LSTM generalise (about 0.65-0.8).
    (x_train, y_train), (x_test, y_test), vocabulary = reference.load_sentiment_sample(
        seed=settings.seed, num_words=300, max_length=48
    )
    model = reference.build_rnn_classifier(
        len(vocabulary), x_train.shape[1], "lstm", embedding_dim=16, units=16
    )
    model.fit(x_train, y_train, **_fit_kwargs(settings))
    _, accuracy = model.evaluate(x_test, y_test, verbose=0)
    model_path = settings.output_dir / "rnn.keras"
    vocabulary_path = settings.output_dir / "rnn_vocabulary.json"
    model.save(model_path)
    vocabulary_path.write_text(json.dumps(vocabulary, ensure_ascii=False), encoding="utf-8")
    baseline = _majority_accuracy(y_train, y_test)
    return TrainResult(
        "rnn", "accuracy", accuracy, "majority class", baseline, [model_path, vocabulary_path]
    )


def _train_lstm(settings: TrainSettings) -> TrainResult:
    (x_train, y_train), (x_test, y_test) = reference.make_sine_series(seed=settings.seed)
    model = reference.build_lstm_forecaster(x_train.shape[1], x_train.shape[2])
    model.fit(x_train, y_train, **_fit_kwargs(settings))
    mse = float(np.mean((model.predict(x_test, verbose=0) - y_test) ** 2))
    naive_mse = float(np.mean((x_test[:, -1, :1] - y_test) ** 2))  # "next equals last"
    path = settings.output_dir / "lstm.keras"
    model.save(path)
    return TrainResult("lstm", "MSE", mse, "naive last-value MSE", naive_mse, [path])


def _train_gan(settings: TrainSettings) -> TrainResult:
    (x_train, _), (x_test, _) = _digits(settings, "tanh")
    gan = reference.build_gan(image_shape=x_train.shape[1:], seed=settings.seed)
    gan.fit(x_train, **_fit_kwargs(settings))
    accuracy = _discriminator_accuracy(gan, x_test)
    model_path = settings.output_dir / "gan.keras"
    grid_path = settings.output_dir / "gan_samples.png"
    gan.save(model_path)
    save_image_grid(gan.generate(64, seed=settings.seed), grid_path)
    return TrainResult(
        "gan",
        "discriminator accuracy, real vs generated",
        accuracy,
        "chance (generator fools it)",
        0.5,
        [model_path, grid_path],
    )


def _discriminator_accuracy(gan: reference.GAN, real_images: np.ndarray) -> float:
    """How often the discriminator tells held-out real images from as many fakes (0.5 = never)."""
    from keras import ops

    fakes = gan.generate(len(real_images))
    real_logits = ops.convert_to_numpy(gan.discriminator(real_images, training=False))
    fake_logits = ops.convert_to_numpy(gan.discriminator(fakes, training=False))
    return float(np.mean(np.concatenate([real_logits > 0, fake_logits <= 0])))


def save_image_grid(images: np.ndarray, path: str | Path, columns: int = 8) -> Path:
    """Save ``(n, H, W, C)`` images in [-1, 1] as one PNG grid (matplotlib, imported here).

    Uses ``matplotlib.figure.Figure`` directly rather than ``pyplot`` so no GUI backend or
    global state is touched.
    """
    from matplotlib.figure import Figure

    columns = require_positive_int("columns", columns)
    rows = -(-len(images) // columns)
    figure = Figure(figsize=(columns, rows))
    for position, image in enumerate(images):
        axes = figure.add_subplot(rows, columns, position + 1)
        pixels = (image + 1.0) / 2.0  # [-1, 1] -> [0, 1]
        axes.imshow(
            pixels[..., 0] if pixels.shape[-1] == 1 else pixels, cmap="gray", vmin=0, vmax=1
        )
        axes.axis("off")
    figure.savefig(path, bbox_inches="tight")
    return Path(path)


_TRAINERS: dict[str, Callable[[TrainSettings], TrainResult]] = {
    "cnn": _train_cnn,
    "rnn": _train_rnn,
    "lstm": _train_lstm,
    "gan": _train_gan,
}


def build_parser() -> argparse.ArgumentParser:
    """The command-line parser (also usable as a ``llama-lora`` subcommand's parent)."""
    parser = argparse.ArgumentParser(
        prog="python -m llama_lora.reference.train",
        description="Train a Keras reference model offline and report its held-out metric.",
    )
    parser.add_argument("model", choices=MODELS, help="which reference model to train")
    parser.add_argument("--epochs", type=int, default=None, help="default: per model")
    parser.add_argument("--batch-size", type=int, default=None, help="default: per model")
    parser.add_argument("--output-dir", type=Path, default=Path("reference_runs"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--mnist", type=Path, default=None, help="local mnist.npz (cnn, gan)")
    parser.add_argument("--verbose", type=int, choices=(0, 1, 2), default=1)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse ``argv``, train, print the result; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = TrainSettings(
            model=args.model,
            epochs=args.epochs,
            batch_size=args.batch_size,
            output_dir=args.output_dir,
            seed=args.seed,
            mnist_path=args.mnist,
            verbose=args.verbose,
        )
    except ValueError as error:
        parser.error(str(error))
    print(train(settings).summary())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
