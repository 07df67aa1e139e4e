"""The one exception type of the data package."""

from __future__ import annotations

from autonl_tf.errors import UserError


class DataError(UserError, ValueError):
    """Bad or missing input data: the message says what was expected and how to fix it."""
