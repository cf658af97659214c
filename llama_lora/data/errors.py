"""The error raised for data that ``build_dataset`` cannot use as given."""

from __future__ import annotations


class DataError(ValueError):
    """Bad training data: a malformed file, a missing column, a label outside the label set.

    A ``ValueError`` subclass so callers that already catch ``ValueError`` keep working, while
    callers that want to tell bad data apart from a bad argument can catch this one. Every message
    names where the problem is (file and line or byte offset, or split and row) and what was
    expected instead.
    """
