"""Fixtures for the Keras reference models: seeded runs and the sentiment sample check."""

from __future__ import annotations

from pathlib import Path

import pytest

SENTIMENT_SAMPLE = (
    Path(__file__).resolve().parents[2] / "llama_lora" / "data" / "samples" / "sentiment.jsonl"
)


@pytest.fixture(autouse=True)
def _seeded():
    """Seed Python, NumPy and the Keras backend so every test trains the same way each run."""
    keras = pytest.importorskip("keras")
    keras.utils.set_random_seed(0)


@pytest.fixture
def sentiment_sample() -> Path:
    """The bundled sentiment sample, or a skip naming what is missing."""
    if not SENTIMENT_SAMPLE.is_file():
        pytest.skip(f"bundled sentiment sample not written yet: {SENTIMENT_SAMPLE}")
    return SENTIMENT_SAMPLE
