"""The service's evidence signing keys, in a directory of their own: one active key signs, retired
keys stay published so packs they signed still verify.

    <dir>/public-keys.json      every key's public half, status and times (published)
    <dir>/private/<hex>.pem     the active key's private half, PKCS#8, mode 0600

Private keys live only here: never in the database, never in a response. The active key is made
on first use; `memaudit evidence rotate-key` makes a new one, retires the old and deletes the
old private half, so nothing can sign with a retired key again (no pack can be back-dated under
it). Every file is written to a temporary name and renamed into place, under a lock, so an API
process reading during a rotation sees the old set or the new, never half of one.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import stat
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from core.signing import ALGORITHM, FINGERPRINT_PREFIX, fingerprint, public_key_pem

MANIFEST = "public-keys.json"
ACTIVE, RETIRED = "active", "retired"


class KeyStoreError(RuntimeError):
    """The key directory is unusable (permissions, a missing or mismatched private key)."""


@dataclass(frozen=True)
class EvidenceKey:
    key_id: str  # sha256:<hex> of the raw public key
    algorithm: str
    public_key_pem: str
    status: str  # active | retired
    created_at: str  # ISO 8601, UTC
    retired_at: str | None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Written beside the target with its final mode from the start, then renamed over it."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    try:
        with os.fdopen(descriptor, "wb") as stream:
            stream.write(data)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


class KeyStore:
    """Evidence keys in one directory (Settings.evidence_keys_dir)."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.private_dir = directory / "private"

    # ---- reading ------------------------------------------------------------------------------

    def published(self) -> list[EvidenceKey]:
        """Every key the service has signed with, newest first; empty before the first pack."""
        path = self.directory / MANIFEST
        if not path.exists():
            return []
        entries = json.loads(path.read_text())["keys"]  # oldest first, as written
        return [EvidenceKey(**entry) for entry in reversed(entries)]

    def active_key(self) -> Ed25519PrivateKey:
        """The key that signs now, made on first use."""
        for _ in range(2):  # a rotation between reading the list and the key: read again
            active = self._active_entry()
            if active is None:
                with self._locked():
                    if self._active_entry() is None:
                        self._add_key(retire=None)
                continue
            try:
                return self._load_private(active.key_id)
            except FileNotFoundError:
                continue
        raise KeyStoreError(f"no usable active evidence key in {self.directory}")

    def _active_entry(self) -> EvidenceKey | None:
        return next((k for k in self.published() if k.status == ACTIVE), None)

    def _private_path(self, key_id: str) -> Path:
        return self.private_dir / f"{key_id.removeprefix(FINGERPRINT_PREFIX)}.pem"

    def _load_private(self, key_id: str) -> Ed25519PrivateKey:
        path = self._private_path(key_id)
        mode = os.stat(path).st_mode
        if stat.S_IMODE(mode) & 0o077:
            raise KeyStoreError(
                f"{path} is readable by others (mode {stat.S_IMODE(mode):o}); it must be 0600"
            )
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
        if not isinstance(key, Ed25519PrivateKey) or fingerprint(key.public_key()) != key_id:
            raise KeyStoreError(f"{path} does not hold the private half of key {key_id}")
        return key

    # ---- writing ------------------------------------------------------------------------------

    def rotate(self) -> tuple[EvidenceKey, EvidenceKey | None]:
        """A new active key; the old one retired (still published) and its private half gone."""
        with self._locked():
            old = self._active_entry()
            new = self._add_key(retire=old)
        if old is not None:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self._private_path(old.key_id))
        return new, old

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One writer at a time across processes (API processes and the CLI on one host)."""
        self.private_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.directory, 0o700)
        os.chmod(self.private_dir, 0o700)
        descriptor = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX)
            yield
        finally:
            os.close(descriptor)

    def _add_key(self, retire: EvidenceKey | None) -> EvidenceKey:
        """Private half first, then the list that makes it active: a crash between the two
        leaves an unused file, never an active key without its private half."""
        private = Ed25519PrivateKey.generate()
        public = private.public_key()
        entry = EvidenceKey(
            fingerprint(public), ALGORITHM, public_key_pem(public), ACTIVE, _now(), None
        )
        pem = private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        _write_atomically(self._private_path(entry.key_id), pem, 0o600)
        entries: list[dict[str, Any]] = []
        for key in reversed(self.published()):
            row = asdict(key)
            if retire is not None and key.key_id == retire.key_id:
                row.update(status=RETIRED, retired_at=entry.created_at)
            entries.append(row)
        entries.append(asdict(entry))
        manifest = json.dumps({"keys": entries}, indent=2).encode()
        _write_atomically(self.directory / MANIFEST, manifest, 0o644)
        return entry
