"""Cheap, stable cache keys for the ``datasets.map`` calls that involve the tokenizer.

``datasets`` names each transformed table by hashing the mapped function with dill. For a map
function that holds a SentencePiece-based tokenizer that pickles a 32k-entry vocabulary object by
object: about 0.4 s per call, several calls per build. Hashing the tokenizer's serialized
``tokenizer.json`` instead takes milliseconds and identifies it just as well, so we compute
that once and pass explicit fingerprints to ``map``.
"""

from __future__ import annotations

FORMAT_VERSION = 1  # bump when the rows build_dataset writes change, to invalidate old caches


def tokenizer_fingerprint(tokenizer) -> str:
    """A hash that changes whenever the tokenizer's vocabulary, rules or special tokens do."""
    from datasets.fingerprint import Hasher

    backend = getattr(tokenizer, "backend_tokenizer", None)
    body = backend.to_str() if backend is not None else Hasher.hash(tokenizer)
    return Hasher.hash(
        [
            type(tokenizer).__name__,
            body,
            sorted((str(k), str(v)) for k, v in tokenizer.special_tokens_map.items()),
            getattr(tokenizer, "chat_template", None) or "",
        ]
    )


def map_fingerprint(dataset, *parts) -> str:
    """The fingerprint of ``dataset`` after a map described by ``parts`` (hashable values)."""
    from datasets.fingerprint import Hasher

    return Hasher.hash([FORMAT_VERSION, dataset._fingerprint, *parts])
