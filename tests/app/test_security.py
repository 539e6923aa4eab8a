from __future__ import annotations

import os

import pytest

from app.security import (
    PathNotAllowed,
    generate_key,
    key_matches,
    resolve_under_roots,
    scope_allows,
)


def test_keys_are_stored_only_as_hashes() -> None:
    key, prefix, key_hash = generate_key()
    assert key.startswith(prefix) and key not in key_hash
    assert key_matches(key, key_hash)
    assert not key_matches(key + "x", key_hash)


def test_scopes_are_ordered() -> None:
    assert scope_allows("admin", "submit") and scope_allows("submit", "read")
    assert not scope_allows("read", "submit") and not scope_allows("submit", "admin")


def test_path_guard(tmp_path) -> None:
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "m").mkdir(parents=True)
    outside.mkdir()
    assert resolve_under_roots(str(root / "m"), [root]) == (root / "m").resolve()
    for bad in [str(outside), str(root / ".." / "outside"), "m", "", str(root / "missing")]:
        with pytest.raises(PathNotAllowed):
            resolve_under_roots(bad, [root])
    os.symlink(outside, root / "escape")  # a link inside the root that leads out of it
    with pytest.raises(PathNotAllowed, match="outside the allowed roots"):
        resolve_under_roots(str(root / "escape"), [root])
