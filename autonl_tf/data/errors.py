"""The one exception type of the data package."""

from __future__ import annotations


class DataError(ValueError):
    """Bad or missing input data: the message says what was expected and how to fix it."""
