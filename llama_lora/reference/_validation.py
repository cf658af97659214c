"""Argument checks shared by the reference builders and data helpers.

Keras reports a bad size deep inside layer construction (or, worse, builds a model with a
zero-sized tensor that fails at fit time), so the builders check their arguments first and name
the offending value.
"""

from __future__ import annotations

from collections.abc import Sequence
from numbers import Integral, Real


def require_positive_int(name: str, value: object) -> int:
    """Return ``value`` as an ``int`` if it is a positive integer, else raise ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, Integral) or value <= 0:
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def require_fraction(name: str, value: object) -> float:
    """Return ``value`` as a ``float`` if it lies strictly between 0 and 1, else raise."""
    if isinstance(value, bool) or not isinstance(value, Real) or not 0.0 < value < 1.0:
        raise ValueError(f"{name} must be a number strictly between 0 and 1, got {value!r}")
    return float(value)


def require_shape(name: str, value: object, rank: int) -> tuple[int, ...]:
    """Return ``value`` as a tuple of ``rank`` positive ints, else raise ``ValueError``."""
    if not isinstance(value, Sequence) or len(value) != rank:
        raise ValueError(f"{name} must be a sequence of {rank} positive integers, got {value!r}")
    for dimension in value:
        if isinstance(dimension, bool) or not isinstance(dimension, Integral) or dimension <= 0:
            raise ValueError(
                f"{name} must be a sequence of {rank} positive integers, got {value!r}"
            )
    return tuple(int(dimension) for dimension in value)


def require_choice(name: str, value: object, choices: Sequence[str]) -> str:
    """Return ``value`` if it is one of ``choices``, else raise ``ValueError`` listing them."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, choices))}; got {value!r}")
    return str(value)
