"""Turn text into padded integer sequences for the recurrent classifier.

The vocabulary is built here by hand (a ``Counter`` and a sort) rather than with
``keras.layers.TextVectorization`` because that layer always runs on TensorFlow and returns
``tf`` tensors, even under ``KERAS_BACKEND=torch``; it breaks frequency ties in an unspecified
order; and its vocabulary lives inside the layer. Here the output is plain NumPy under any
backend, the order is deterministic (count, then alphabetical), and the vocabulary is a
``list[str]`` you can save as JSON. Padding uses ``keras.utils.pad_sequences``.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from llama_lora.reference._validation import require_fraction, require_positive_int

PAD, OOV = "", "[UNK]"  # indices 0 and 1, as in keras' TextVectorization
SENTIMENT_SAMPLE = Path(__file__).resolve().parent.parent / "data" / "samples" / "sentiment.jsonl"
SENTIMENT_LABELS = ("negative", "positive")  # label index = position
_TOKEN = re.compile(r"\w+(?:'\w+)?")


def tokenize(text: str) -> list[str]:
    """Lower-case word tokens; apostrophes inside words are kept (``"don't"``)."""
    return _TOKEN.findall(text.lower())


def build_vocabulary(texts: Sequence[str], num_words: int = 10000) -> list[str]:
    """The ``num_words`` most useful tokens: padding, OOV, then the most frequent words.

    Args:
        texts: Training texts (build on the training split only, so held-out words stay OOV).
        num_words: Vocabulary size including padding (index 0) and OOV (index 1).

    Returns:
        Tokens by index; ties in frequency are broken alphabetically.

    Raises:
        ValueError: If ``num_words`` is below 3.
    """
    num_words = require_positive_int("num_words", num_words)
    if num_words < 3:
        raise ValueError(f"num_words must be at least 3 (padding, OOV, one word), got {num_words}")
    counts = Counter(token for text in texts for token in tokenize(text))
    ranked = sorted(counts, key=lambda token: (-counts[token], token))
    return [PAD, OOV, *ranked[: num_words - 2]]


def texts_to_sequences(
    texts: Sequence[str] | None = None,
    vocabulary: Sequence[str] | None = None,
    *,
    num_words: int = 10000,
    max_length: int = 100,
) -> tuple[np.ndarray, list[str]]:
    """Encode texts as ``(N, max_length)`` int32 token ids, padded with 0 at the front.

    Args:
        texts: Texts to encode; ``None`` encodes the bundled sentiment sample
            (``llama_lora/data/samples/sentiment.jsonl``), the data of the LoRA sentiment
            example.
        vocabulary: Tokens by index from ``build_vocabulary``; ``None`` builds one from
            ``texts``. Pass the training vocabulary when encoding held-out text.
        num_words: Vocabulary size when one is built.
        max_length: Sequence length; longer texts keep their last ``max_length`` tokens
            (padding and truncating at the front keep the end of the text, which the
            recurrent layer reads last, intact).

    Returns:
        ``(sequences, vocabulary)``; unknown words map to 1 (OOV).

    Raises:
        FileNotFoundError: If ``texts`` is ``None`` and the sample is not installed.
        ValueError: If a size is not a positive integer.
    """
    import keras

    max_length = require_positive_int("max_length", max_length)
    if texts is None:
        texts, _ = read_sentiment_sample()
    if isinstance(texts, str):
        raise ValueError("texts must be a sequence of strings, got a single str")
    vocabulary = list(vocabulary) if vocabulary is not None else build_vocabulary(texts, num_words)
    index = {token: position for position, token in enumerate(vocabulary)}
    ids = [[index.get(token, 1) for token in tokenize(text)] for text in texts]
    sequences = keras.utils.pad_sequences(ids, maxlen=max_length, dtype="int32", value=0)
    return sequences, vocabulary


def read_sentiment_sample(path: str | Path | None = None) -> tuple[list[str], np.ndarray]:
    """Read a sentiment JSONL file (``{"text", "label": "positive"|"negative"}`` per line).

    Args:
        path: The file; ``None`` for the bundled sample.

    Returns:
        ``(texts, labels)`` with labels ``(N,)`` int32, 1 = positive.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: If a line lacks ``text``/``label`` or has another label.
    """
    path = Path(path) if path is not None else SENTIMENT_SAMPLE
    if not path.is_file():
        raise FileNotFoundError(f"no sentiment file at {path}")
    texts, labels = [], []
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        row = json.loads(line)
        if "text" not in row or row.get("label") not in SENTIMENT_LABELS:
            raise ValueError(
                f"{path}:{number}: need 'text' and 'label' in {SENTIMENT_LABELS}, got {row!r}"
            )
        texts.append(row["text"])
        labels.append(SENTIMENT_LABELS.index(row["label"]))
    return texts, np.asarray(labels, dtype="int32")


def load_sentiment_sample(
    path: str | Path | None = None,
    *,
    num_words: int = 10000,
    max_length: int = 100,
    test_size: float = 0.2,
    seed: int = 0,
) -> tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray], list[str]]:
    """The sentiment sample split and encoded for ``build_rnn_classifier``.

    The split is stratified and seeded; the vocabulary comes from the training texts only.

    Returns:
        ``(x_train, y_train), (x_test, y_test), vocabulary``.

    Raises:
        FileNotFoundError: If the file does not exist.
        ValueError: For a bad size or ``test_size`` outside (0, 1).
    """
    from sklearn.model_selection import train_test_split

    test_size = require_fraction("test_size", test_size)
    texts, labels = read_sentiment_sample(path)
    train_texts, test_texts, y_train, y_test = train_test_split(
        texts, labels, test_size=test_size, random_state=seed, stratify=labels
    )
    x_train, vocabulary = texts_to_sequences(
        train_texts, num_words=num_words, max_length=max_length
    )
    x_test, _ = texts_to_sequences(test_texts, vocabulary, max_length=max_length)
    return (x_train, y_train), (x_test, y_test), vocabulary
