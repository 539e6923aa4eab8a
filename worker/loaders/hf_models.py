"""Models on the Hugging Face Hub: `hf:<repo>@<revision>`, read through the Hub's local cache.

Only safe files are fetched (configs, tokenizers, safetensors; never pickles), and a revision
is required: a branch moves, an audit must name the commit it audited. When the Hub is offline
(`HF_HUB_OFFLINE=1`, as on a machine without internet) the revision must already be cached.
"""

from __future__ import annotations

import re
from pathlib import Path

from worker.loaders.errors import ModelError

PREFIX = "hf:"
SAFE_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja"]
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


def parse_uri(uri: str) -> tuple[str, str]:
    """(repo id, revision) of `hf:<repo>@<revision>`."""
    repo, at, revision = uri[len(PREFIX) :].rpartition("@")
    if not uri.startswith(PREFIX) or not at or not repo or not revision:
        raise ModelError(f"{uri!r}: use hf:<org>/<repo>@<commit sha>")
    if not REPO_ID.match(repo) or ".." in repo:
        raise ModelError(f"{repo!r} is not a Hugging Face repository id")
    return repo, revision


def snapshot(uri: str, *, download: bool, cache_dir: str = "") -> Path:
    """The revision's files on local disk; from the cache alone unless `download`."""
    from huggingface_hub import constants, snapshot_download

    repo, revision = parse_uri(uri)
    offline = constants.HF_HUB_OFFLINE or not download
    try:
        path = snapshot_download(
            repo,
            revision=revision,
            allow_patterns=SAFE_FILES,
            local_files_only=offline,
            cache_dir=cache_dir or None,
        )
    except Exception as exc:  # LocalEntryNotFoundError, RepositoryNotFoundError, HTTP errors
        where = "in the local Hugging Face cache" if offline else "on the Hub"
        raise ModelError(f"{repo}@{revision} is not available {where}: {exc}") from None
    return Path(path)


def check_revision(uri: str, cache_dir: str = "") -> None:
    """Submit-time check: a valid URI, and offline a revision already in the cache (online the
    worker downloads it)."""
    from huggingface_hub import constants

    parse_uri(uri)
    if constants.HF_HUB_OFFLINE:
        snapshot(uri, download=False, cache_dir=cache_dir)
