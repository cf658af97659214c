"""Reference DCGAN: a generator that upsamples noise to images and a discriminator that judges.

The tutorial version this replaces had a generator ending at 7x7 while its discriminator
expected 28x28 (the combined model could not be built) and no training loop. Here the generator
upsamples 7x7 -> 14x14 -> 28x28 with transposed convolutions, and ``GAN.train_step`` alternates
a discriminator update and a generator update, so ``gan.fit(images)`` trains both.
"""

from __future__ import annotations

from collections.abc import Callable
from numbers import Real

import keras
import numpy as np
from keras import layers, ops

from llama_lora.reference._validation import require_positive_int, require_shape

# Two stride-2 transposed convolutions double the side twice: the seed feature map is 1/4 size.
_UPSAMPLING = 4


def build_generator(latent_dim: int = 100, image_shape: tuple[int, int, int] = (28, 28, 1)):
    """Generator: ``(batch, latent_dim)`` noise -> ``(batch, *image_shape)`` images in [-1, 1].

    Architecture (for 28x28x1)::

        Dense 7*7*128 -> BatchNorm -> LeakyReLU -> Reshape (7, 7, 128)
        Conv2DTranspose 64 4x4 stride 2 -> BatchNorm -> LeakyReLU   (14, 14, 64)
        Conv2DTranspose C 4x4 stride 2, tanh                         (28, 28, C)
    """
    latent_dim, (height, width, channels) = _validate_gan_args(latent_dim, image_shape)
    seed_height, seed_width = height // _UPSAMPLING, width // _UPSAMPLING
    return keras.Sequential(
        [
            keras.Input(shape=(latent_dim,)),
            layers.Dense(seed_height * seed_width * 128, use_bias=False),
            layers.BatchNormalization(),
            layers.LeakyReLU(0.2),
            layers.Reshape((seed_height, seed_width, 128)),
            layers.Conv2DTranspose(64, 4, strides=2, padding="same", use_bias=False),
            layers.BatchNormalization(),
            layers.LeakyReLU(0.2),
            # tanh matches real images scaled to [-1, 1] (load_digits_28x28(value_range="tanh")).
            layers.Conv2DTranspose(channels, 4, strides=2, padding="same", activation="tanh"),
        ],
        name="generator",
    )


def build_discriminator(image_shape: tuple[int, int, int] = (28, 28, 1)):
    """Discriminator: ``(batch, *image_shape)`` images -> ``(batch, 1)`` logits (real > 0).

    Architecture::

        Conv2D 64 4x4 stride 2 -> LeakyReLU -> Dropout 0.3
        Conv2D 128 4x4 stride 2 -> LeakyReLU -> Dropout 0.3
        Flatten -> Dense 1 (logit; the loss applies the sigmoid, which is numerically stabler)
    """
    _, image_shape = _validate_gan_args(1, image_shape)
    return keras.Sequential(
        [
            keras.Input(shape=image_shape),
            layers.Conv2D(64, 4, strides=2, padding="same"),
            layers.LeakyReLU(0.2),
            layers.Dropout(0.3),
            layers.Conv2D(128, 4, strides=2, padding="same"),
            layers.LeakyReLU(0.2),
            layers.Dropout(0.3),
            layers.Flatten(),
            layers.Dense(1),
        ],
        name="discriminator",
    )


@keras.saving.register_keras_serializable(package="llama_lora")
class GAN(keras.Model):
    """A generator and a discriminator trained against each other by ``fit``.

    Each ``train_step`` does, on a batch of ``B`` real images:

    1. Discriminator update: ``B`` fakes from fresh noise; loss =
       BCE(real logits, ``1 - label_smoothing``) + BCE(fake logits, 0). One-sided label
       smoothing (Salimans et al., 2016) keeps the discriminator from growing over-confident,
       which would starve the generator of gradient.
    2. Generator update: ``B`` fakes from fresh noise; loss = BCE(discriminator(fakes), 1),
       the non-saturating loss; only the generator's weights move.

    Gradients are taken with the backend's own autograd (``tf.GradientTape`` or
    ``torch.autograd.grad``), the pattern of the Keras GAN guide, because Keras 3 has no
    backend-neutral way to differentiate inside a custom ``train_step``.

    Calling the model maps noise to images; ``generate(n)`` samples the noise for you.
    """

    def __init__(
        self,
        generator: keras.Model,
        discriminator: keras.Model,
        latent_dim: int,
        label_smoothing: float = 0.1,
        seed: int | None = None,
        **kwargs,
    ) -> None:
        super().__init__(**kwargs)
        self.latent_dim = require_positive_int("latent_dim", latent_dim)
        if isinstance(label_smoothing, bool) or not isinstance(label_smoothing, Real):
            raise ValueError(f"label_smoothing must be a number in [0, 1), got {label_smoothing!r}")
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing!r}")
        self.label_smoothing = float(label_smoothing)
        self.seed = seed
        self.generator = generator
        self.discriminator = discriminator
        self.seed_generator = keras.random.SeedGenerator(seed)
        self.loss_fn = keras.losses.BinaryCrossentropy(from_logits=True)
        self.d_loss_tracker = keras.metrics.Mean(name="d_loss")
        self.g_loss_tracker = keras.metrics.Mean(name="g_loss")
        self.d_optimizer: keras.optimizers.Optimizer | None = None
        self.g_optimizer: keras.optimizers.Optimizer | None = None
        # Both networks have fixed input shapes, so the GAN can be built (and saved) at once.
        self.build((None, self.latent_dim))

    def call(self, noise, training: bool = False):
        """Map ``(batch, latent_dim)`` noise to ``(batch, *image_shape)`` images."""
        return self.generator(noise, training=training)

    @property
    def metrics(self) -> list[keras.metrics.Metric]:
        # Listed here so Keras resets them at the start of every epoch.
        return [self.d_loss_tracker, self.g_loss_tracker]

    def compile(
        self,
        d_optimizer: keras.optimizers.Optimizer | None = None,
        g_optimizer: keras.optimizers.Optimizer | None = None,
        **kwargs,
    ) -> None:
        """Set one optimizer per network (default Adam 2e-4, beta_1 0.5, as in DCGAN).

        Extra keyword arguments (``run_eagerly``, ``jit_compile``...) go to ``Model.compile``.
        """
        super().compile(optimizer=None, **kwargs)
        self.d_optimizer = d_optimizer or keras.optimizers.Adam(2e-4, beta_1=0.5)
        self.g_optimizer = g_optimizer or keras.optimizers.Adam(2e-4, beta_1=0.5)
        # Built now, outside any traced function, so their slots exist before the first step.
        self.d_optimizer.build(self.discriminator.trainable_variables)
        self.g_optimizer.build(self.generator.trainable_variables)

    def train_step(self, data):
        real_images = data[0] if isinstance(data, (tuple, list)) else data  # (B, H, W, C)
        batch_size = ops.shape(real_images)[0]
        d_loss = self._discriminator_step(real_images, batch_size)
        g_loss = self._generator_step(batch_size)
        self.d_loss_tracker.update_state(d_loss)
        self.g_loss_tracker.update_state(g_loss)
        return {metric.name: metric.result() for metric in self.metrics}

    def generate(self, n: int, seed: int | None = None) -> np.ndarray:
        """Return ``n`` generated images as a ``(n, *image_shape)`` float array in [-1, 1].

        Args:
            n: Number of images.
            seed: Seed for the noise; ``None`` draws from the model's own seed generator.
        """
        n = require_positive_int("n", n)
        noise = keras.random.normal(
            (n, self.latent_dim), seed=self.seed_generator if seed is None else seed
        )
        return ops.convert_to_numpy(self.generator(noise, training=False))

    def _noise(self, batch_size):
        return keras.random.normal((batch_size, self.latent_dim), seed=self.seed_generator)

    def _discriminator_step(self, real_images, batch_size):
        fake_images = ops.stop_gradient(self.generator(self._noise(batch_size), training=True))

        def loss():
            real_logits = self.discriminator(real_images, training=True)  # (B, 1)
            fake_logits = self.discriminator(fake_images, training=True)  # (B, 1)
            real_targets = ops.ones_like(real_logits) * (1.0 - self.label_smoothing)
            return self.loss_fn(real_targets, real_logits) + self.loss_fn(
                ops.zeros_like(fake_logits), fake_logits
            )

        return _minimize(loss, self.d_optimizer, self.discriminator.trainable_variables)

    def _generator_step(self, batch_size):
        noise = self._noise(batch_size)

        def loss():
            fake_images = self.generator(noise, training=True)
            fake_logits = self.discriminator(fake_images, training=False)
            return self.loss_fn(ops.ones_like(fake_logits), fake_logits)

        return _minimize(loss, self.g_optimizer, self.generator.trainable_variables)

    def get_config(self) -> dict:
        return {
            "name": self.name,
            "trainable": self.trainable,
            "generator": keras.saving.serialize_keras_object(self.generator),
            "discriminator": keras.saving.serialize_keras_object(self.discriminator),
            "latent_dim": self.latent_dim,
            "label_smoothing": self.label_smoothing,
            "seed": self.seed,
        }

    @classmethod
    def from_config(cls, config: dict) -> GAN:
        config = dict(config)
        for key in ("generator", "discriminator"):
            config[key] = keras.saving.deserialize_keras_object(config[key])
        return cls(**config)

    def get_compile_config(self) -> dict | None:
        if self.d_optimizer is None or self.g_optimizer is None:
            return None
        return {
            "d_optimizer": keras.saving.serialize_keras_object(self.d_optimizer),
            "g_optimizer": keras.saving.serialize_keras_object(self.g_optimizer),
        }

    def compile_from_config(self, config: dict) -> None:
        self.compile(
            d_optimizer=keras.saving.deserialize_keras_object(config["d_optimizer"]),
            g_optimizer=keras.saving.deserialize_keras_object(config["g_optimizer"]),
        )


def build_gan(
    latent_dim: int = 100,
    image_shape: tuple[int, int, int] = (28, 28, 1),
    *,
    label_smoothing: float = 0.1,
    learning_rate: float = 2e-4,
    seed: int | None = None,
) -> GAN:
    """Build and compile a DCGAN for small images (``gan.fit(images)``, ``gan.generate(n)``).

    A GAN learns to sample new images that look like its training set, with no labels: the
    generator turns noise into images, the discriminator tells real from generated, and each
    improves against the other (see ``GAN`` for the training step, ``build_generator`` and
    ``build_discriminator`` for the networks). Train it on images scaled to [-1, 1].

    Args:
        latent_dim: Size of the noise vector.
        image_shape: ``(height, width, channels)``; height and width divisible by 4.
        label_smoothing: Real-image target is ``1 - label_smoothing`` for the discriminator.
        learning_rate: Adam learning rate of both networks (beta_1 0.5, as in DCGAN).
        seed: Seed of the noise the model samples; ``None`` for a random one.

    Returns:
        A compiled ``GAN``.

    Raises:
        ValueError: If a size is not a positive integer, a side is not divisible by 4, or
            ``label_smoothing`` is outside [0, 1).
    """
    latent_dim, image_shape = _validate_gan_args(latent_dim, image_shape)
    if not learning_rate > 0:
        raise ValueError(f"learning_rate must be positive, got {learning_rate!r}")
    gan = GAN(
        build_generator(latent_dim, image_shape),
        build_discriminator(image_shape),
        latent_dim=latent_dim,
        label_smoothing=label_smoothing,
        seed=seed,
    )
    gan.compile(
        d_optimizer=keras.optimizers.Adam(learning_rate, beta_1=0.5),
        g_optimizer=keras.optimizers.Adam(learning_rate, beta_1=0.5),
    )
    return gan


def _validate_gan_args(latent_dim: object, image_shape: object) -> tuple[int, tuple[int, ...]]:
    latent_dim = require_positive_int("latent_dim", latent_dim)
    image_shape = require_shape("image_shape", image_shape, rank=3)
    if image_shape[0] % _UPSAMPLING or image_shape[1] % _UPSAMPLING:
        raise ValueError(
            f"image_shape height and width must be divisible by {_UPSAMPLING} (two stride-2 "
            f"upsamplings), got {image_shape!r}"
        )
    return latent_dim, image_shape


def _minimize(loss_fn: Callable, optimizer: keras.optimizers.Optimizer, variables: list):
    """One optimizer step on ``variables`` to lower ``loss_fn()``; returns the loss."""
    backend = keras.backend.backend()
    if backend == "tensorflow":
        import tensorflow as tf

        with tf.GradientTape() as tape:
            loss = loss_fn()
        optimizer.apply(tape.gradient(loss, variables), variables)
        return loss
    if backend == "torch":
        import torch

        loss = loss_fn()
        gradients = torch.autograd.grad(loss, [variable.value for variable in variables])
        with torch.no_grad():
            optimizer.apply(list(gradients), variables)
        return loss
    raise NotImplementedError(
        f"GAN.train_step supports the 'tensorflow' and 'torch' Keras backends, got {backend!r}"
    )
