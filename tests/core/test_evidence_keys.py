"""The evidence key directory: made on first use with private modes, one active key however many
processes ask at once, rotation that keeps old public keys and deletes old private ones."""

from __future__ import annotations

import json
import multiprocessing
import os
import stat
from pathlib import Path

import pytest

from core.evidence_keys import MANIFEST, KeyStore, KeyStoreError
from core.signing import fingerprint, load_public_key, sign_payload, verify_envelope


def _mode(path: Path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


def test_the_first_use_makes_one_private_key_that_only_the_owner_reads(tmp_path) -> None:
    store = KeyStore(tmp_path / "keys")
    assert store.published() == []
    key = store.active_key()
    (entry,) = store.published()
    assert entry.status == "active" and entry.key_id == fingerprint(key.public_key())
    assert fingerprint(load_public_key(entry.public_key_pem)) == entry.key_id
    (private,) = (tmp_path / "keys" / "private").iterdir()
    assert _mode(private) == 0o600 and _mode(private.parent) == 0o700
    assert _mode(tmp_path / "keys") == 0o700
    assert "PRIVATE" not in (tmp_path / "keys" / MANIFEST).read_text()
    assert fingerprint(store.active_key().public_key()) == entry.key_id  # not made again
    assert not list((tmp_path / "keys").glob(".*.tmp")) and not list(private.parent.glob(".*"))


def _active_id(directory: str, queue) -> None:  # type: ignore[no-untyped-def]
    queue.put(fingerprint(KeyStore(Path(directory)).active_key().public_key()))


def test_processes_racing_to_the_first_key_agree_on_one(tmp_path) -> None:
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    workers = [
        context.Process(target=_active_id, args=(str(tmp_path / "keys"), queue)) for _ in range(4)
    ]
    for worker in workers:
        worker.start()
    found = {queue.get(timeout=60) for _ in workers}
    for worker in workers:
        worker.join(timeout=60)
    assert len(found) == 1 and len(KeyStore(tmp_path / "keys").published()) == 1


def test_rotation_retires_the_old_key_and_deletes_its_private_half(tmp_path) -> None:
    store = KeyStore(tmp_path / "keys")
    old_private = store.active_key()
    pack = sign_payload({"audit": {"id": "x"}}, old_private)
    new, old = store.rotate()
    assert old is not None and old.key_id == fingerprint(old_private.public_key())
    listed = {k.key_id: k for k in store.published()}
    assert [k.key_id for k in store.published()] == [new.key_id, old.key_id]  # newest first
    assert listed[old.key_id].status == "retired"
    assert listed[old.key_id].retired_at == new.created_at
    assert listed[new.key_id].status == "active" and listed[new.key_id].retired_at is None
    (private,) = (tmp_path / "keys" / "private").iterdir()
    assert private.name == new.key_id.removeprefix("sha256:") + ".pem"
    assert fingerprint(store.active_key().public_key()) == new.key_id
    # What the retired key signed still verifies with its published public half.
    assert verify_envelope(pack, load_public_key(listed[old.key_id].public_key_pem))
    newer, older = store.rotate()
    statuses = [(k.key_id, k.status) for k in store.published()]
    assert statuses == [(newer.key_id, "active"), (new.key_id, "retired"), (old.key_id, "retired")]
    assert older is not None and older.key_id == new.key_id


def test_a_private_key_others_can_read_or_one_swapped_in_is_refused(tmp_path) -> None:
    store = KeyStore(tmp_path / "keys")
    store.active_key()
    (private,) = (tmp_path / "keys" / "private").iterdir()
    private.chmod(0o644)
    with pytest.raises(KeyStoreError, match="readable by others"):
        store.active_key()
    private.chmod(0o600)
    other = KeyStore(tmp_path / "other")
    other.active_key()
    (foreign,) = (tmp_path / "other" / "private").iterdir()
    private.write_bytes(foreign.read_bytes())
    with pytest.raises(KeyStoreError, match="does not hold the private half"):
        store.active_key()
    manifest = json.loads((tmp_path / "keys" / MANIFEST).read_text())
    assert len(manifest["keys"]) == 1  # nothing was replaced behind the operator's back
