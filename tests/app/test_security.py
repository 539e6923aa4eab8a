from __future__ import annotations

from app.security import generate_key, key_matches, scope_allows


def test_keys_are_stored_only_as_hashes() -> None:
    key, prefix, key_hash = generate_key()
    assert key.startswith(prefix) and key not in key_hash
    assert key_matches(key, key_hash)
    assert not key_matches(key + "x", key_hash)


def test_scopes_are_ordered() -> None:
    assert scope_allows("admin", "submit") and scope_allows("submit", "read")
    assert not scope_allows("read", "submit") and not scope_allows("submit", "admin")
