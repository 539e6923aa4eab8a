"""API keys: random, stored only as hashes, scoped."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from core.config import SCOPE_NAMES

SCOPES = SCOPE_NAMES
KEY_PREFIX_LEN = 12


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
