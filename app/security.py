"""API keys (hashed, scoped) and the path guard that keeps every file access inside its roots."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Sequence
from pathlib import Path

SCOPES = ("read", "submit", "admin")
KEY_PREFIX_LEN = 12


class PathNotAllowed(ValueError):
    """A user-supplied path that is missing or lies outside the configured roots."""


def scope_allows(granted: str, needed: str) -> bool:
    """Scopes are ordered: admin can do what submit can, submit what read can."""
    return SCOPES.index(granted) >= SCOPES.index(needed)


def generate_key() -> tuple[str, str, str]:
    """A new key as (full key, lookup prefix, sha256 hash); only the hash is ever stored."""
    key = "ma_" + secrets.token_urlsafe(32)
    return key, key[:KEY_PREFIX_LEN], hash_key(key)


def hash_key(key: str) -> str:
    # Keys carry 256 bits of randomness, so a fast hash is enough (no password stretching needed).
    return hashlib.sha256(key.encode()).hexdigest()


def key_matches(key: str, stored_hash: str) -> bool:
    return hmac.compare_digest(hash_key(key), stored_hash)


def resolve_under_roots(raw: str, roots: Sequence[Path], *, kind: str = "path") -> Path:
    """Resolve `raw` (symlinks included) and refuse anything outside every root.

    Resolving first means `..` segments and symlinks pointing elsewhere are judged by
    where they really lead, not by how the string looks.
    """
    if not raw or "\x00" in raw:
        raise PathNotAllowed(f"{kind} path is empty or malformed")
    candidate = Path(raw)
    if not candidate.is_absolute():
        raise PathNotAllowed(f"{kind} path must be absolute: {raw!r}")
    try:
        resolved = candidate.resolve(strict=True)
    except (FileNotFoundError, NotADirectoryError):
        raise PathNotAllowed(f"{kind} path does not exist: {raw}") from None
    except (OSError, RuntimeError) as exc:
        raise PathNotAllowed(f"{kind} path cannot be resolved: {raw} ({exc})") from None
    for root in roots:
        if resolved.is_relative_to(root.resolve()):
            return resolved
    allowed = ", ".join(str(root) for root in roots)
    raise PathNotAllowed(f"{kind} path {raw} is outside the allowed roots ({allowed})")
