"""The one error masking raises: the tunnel answers that partition with an error, no data."""

from __future__ import annotations


class MaskingError(Exception):
    """Masking could not be applied (bad rule, corrupt batch, unknown codec...): fail closed.

    Messages name the rule, topic or batch, never a record's content.
    """
