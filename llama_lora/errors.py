"""Exceptions that are part of llama_lora's public API."""

from __future__ import annotations


class IntegrityError(Exception):
    """A model file is missing or its sha256 differs from the manifest.

    Raised before any weight is read, so a tampered or truncated download never reaches
    ``torch`` or ``safetensors``.
    """
