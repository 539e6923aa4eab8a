"""Models on the Hugging Face Hub: `hf:<repo>@<revision>`, read through the Hub's local cache.

Only safe files are fetched (configs, tokenizers, safetensors; never pickles), and a revision
is required: a branch moves, an audit must name the commit it audited. Workers download from
`MEMAUDIT_HF_ENDPOINT` unless the Hub is offline (`HF_HUB_OFFLINE=1`, as on a machine without
internet, read once when huggingface_hub is imported); then the revision must already be cached.
"""

from __future__ import annotations

import re
from pathlib import Path

from core.confinement import DEFAULT_RULES, FileRules, PathRefused, pin
from core.inspection.errors import ModelError

PREFIX = "hf:"
SAFE_FILES = ["*.json", "*.safetensors", "*.txt", "*.model", "*.tiktoken", "*.jinja"]
REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")
COMMIT = re.compile(r"^[0-9a-f]{40}$")
MAX_REVISION_CHARS = 255
# git check-ref-format: no control characters, space or ~^:?*[\ in a ref name.
REF_FORBIDDEN = re.compile(r"[\x00-\x20\x7f~^:?*\[\\]")


def check_revision(revision: str) -> None:
    """A commit hash or a ref name by git's own rules (the Hub's grammar): never a path."""
    if COMMIT.match(revision):
        return
    components = revision.split("/")
    if (
        not revision
        or len(revision) > MAX_REVISION_CHARS
        or REF_FORBIDDEN.search(revision)
        or ".." in revision
        or "@{" in revision
        or revision == "@"
        or revision.endswith((".", "/"))
        or any(not part or part.startswith(".") or part.endswith(".lock") for part in components)
    ):
        raise ModelError(
            f"revision {revision!r} is neither a commit hash (40 hex digits) nor a branch, tag "
            "or refs/pr/N name"
        )


def parse_uri(uri: str) -> tuple[str, str]:
    """(repo id, revision) of `hf:<repo>@<revision>`; nothing else reaches the filesystem."""
    repo, at, revision = uri[len(PREFIX) :].rpartition("@")
    if not uri.startswith(PREFIX) or not at or not repo or not revision:
        raise ModelError(f"{uri!r}: use hf:<org>/<repo>@<commit sha>")
    # `--` is the cache's separator: `org--b` would name the same cache folder as `org/b`.
    if not REPO_ID.match(repo) or ".." in repo or "--" in repo:
        raise ModelError(f"{repo!r} is not a Hugging Face repository id")
    check_revision(revision)
    return repo, revision


def cache_root(cache_dir: str = "") -> Path:
    """The Hub's cache: a root of its own (its snapshot links lead into its blobs)."""
    from huggingface_hub import constants

    return Path(cache_dir or constants.HF_HUB_CACHE).expanduser()


def _cached_commit(repo: str, revision: str, root: Path, rules: FileRules) -> str:
    """The commit a revision names in the cache: a ref file read beneath the cache root."""
    if COMMIT.match(revision):
        return revision
    folder = "models--" + repo.replace("/", "--")
    ref = root / folder / "refs" / revision
    try:
        with pin(str(ref), [root], kind="Hub cache", want="file", rules=rules) as pinned:
            commit = next(iter(pinned.files.values())).read(64).decode("ascii", "replace").strip()
    except PathRefused:
        raise ModelError(
            f"{repo}@{revision} is not available in the local Hugging Face cache"
        ) from None
    if not COMMIT.match(commit):
        raise ModelError(f"the cache's ref {revision} of {repo} does not hold a commit hash")
    return commit


def snapshot(
    uri: str,
    *,
    download: bool,
    cache_dir: str = "",
    rules: FileRules = DEFAULT_RULES,
    endpoint: str | None = None,
    token: str | None = None,
) -> Path:
    """The revision's snapshot folder in the cache (to be resolved beneath the cache root);
    downloaded first from `endpoint` (None: the library's) when `download` and the Hub is
    online."""
    from huggingface_hub import constants, snapshot_download

    repo, revision = parse_uri(uri)
    root = cache_root(cache_dir)
    if download and not constants.HF_HUB_OFFLINE:
        try:
            path = Path(
                snapshot_download(
                    repo,
                    revision=revision,
                    allow_patterns=SAFE_FILES,
                    cache_dir=str(root),
                    endpoint=endpoint or None,
                    token=token or None,
                )
            )
        except Exception as exc:  # RepositoryNotFoundError, RevisionNotFoundError, HTTP errors
            raise ModelError(f"{repo}@{revision} is not available on the Hub: {exc}") from None
        revision = path.name  # the commit the download resolved
    commit = _cached_commit(repo, revision, root, rules)
    folder = root / ("models--" + repo.replace("/", "--")) / "snapshots" / commit
    try:
        with pin(str(folder), [root], kind="Hub cache", want="dir", rules=rules):
            pass
    except PathRefused:
        raise ModelError(
            f"{repo}@{revision} is not available in the local Hugging Face cache"
        ) from None
    return folder


def offline() -> bool:
    """Offline, a revision must already be cached; online the worker downloads it."""
    from huggingface_hub import constants

    return bool(constants.HF_HUB_OFFLINE)
