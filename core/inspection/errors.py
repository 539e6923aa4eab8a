"""Errors the loaders raise: each a reason a user can act on."""

from __future__ import annotations


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (library errors run to pages), or its type."""
    lines = str(exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__


class ModelError(ValueError):
    """A model URI that cannot be audited, with the reason in words."""
