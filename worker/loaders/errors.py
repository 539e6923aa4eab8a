"""Errors the loaders raise: each a reason a user can act on."""

from __future__ import annotations


class ModelError(ValueError):
    """A model URI that cannot be audited, with the reason in words."""
