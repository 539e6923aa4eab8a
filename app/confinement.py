"""Every file reached from a user-supplied URI, resolved beneath its root link by link.

Python has no openat2(RESOLVE_BENEATH), so a path is walked one component at a time from a
descriptor of its root: each component is opened with O_PATH|O_NOFOLLOW; a link continues from
the directory that holds it (an absolute one only when it names a place inside the same root);
`..` never climbs above the root. A path outside every root gets one refusal, the same whether
or not it exists, and nothing outside is ever opened.

Everything reached is pinned by its descriptor. Readers get either the checked canonical path
(roots written only by operators) or, where those who submit audits can write the roots, a
private staging directory of links to `/proc/self/fd/N`: each reopens the pinned inode, so
nothing swapped in between the check and the read is ever read.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import stat
import tempfile
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

MAX_LINKS = 40  # as the kernel's own limit on links followed in one path
MAX_TREE_DEPTH = 8
MAX_TREE_FILES = 4096
_OPEN_PATH = os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC


class PathRefused(ValueError):
    """A user-supplied path that may not be read, with the reason in words."""


@dataclass(frozen=True)
class FileRules:
    """How strictly the files under the roots are read (operator settings)."""

    # A hard link has no target to check: a second name may be anywhere on the filesystem.
    allow_hardlinks: bool = False
    # Roots writable by those who submit audits: readers get pinned descriptors, not paths.
    stage: bool = True


DEFAULT_RULES = FileRules()


@dataclass(frozen=True)
class Located:
    """A file or directory found beneath a root: the root, and the canonical components
    below it (every link already followed, so each is a real directory or the object)."""

    root: Path
    parts: tuple[str, ...]

    @property
    def path(self) -> Path:
        return self.root.joinpath(*self.parts)


def refuse_outside(raw: str, roots: Sequence[Path], kind: str) -> PathRefused:
    """The one refusal for a path outside the roots, whether or not it exists."""
    allowed = ", ".join(str(root) for root in roots) or "none"
    return PathRefused(f"{kind} path {raw} is outside the folders you may read ({allowed})")


def _root_names(root: Path) -> list[str]:
    names = [str(root).rstrip("/") or "/", os.path.realpath(root).rstrip("/") or "/"]
    return list(dict.fromkeys(names))


def _below(path: str, root_names: Sequence[str]) -> list[str] | None:
    """The components of an absolute path below one of the root's names, or None."""
    for name in root_names:
        if path == name:
            return []
        prefix = name if name.endswith("/") else name + "/"
        if path.startswith(prefix):
            return [part for part in path[len(prefix) :].split("/") if part]
    return None


def locate_root(raw: str, roots: Sequence[Path], kind: str) -> tuple[Path, list[str]]:
    """The root a user path names, and its components below it; lexical, nothing opened."""
    if not raw or "\x00" in raw or not raw.startswith("/"):
        raise PathRefused(f"{kind} path must be an absolute path: {raw!r}")
    matches = [
        (root, below) for root in roots if (below := _below(raw, _root_names(root))) is not None
    ]
    if not matches:
        raise refuse_outside(raw, roots, kind)
    # Nested roots: the innermost one confines most tightly.
    return min(matches, key=lambda match: len(match[1]))


class _Walker:
    """Resolves paths beneath one root from its descriptor; holds the descriptors it opened."""

    def __init__(self, root: Path, kind: str, raw: str) -> None:
        self.root, self.kind, self.raw = root, kind, raw
        self.root_names = _root_names(root)
        try:
            root_fd = os.open(root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise PathRefused(f"the {kind} root {root} cannot be opened ({exc.strerror})") from None
        self.directories: dict[tuple[str, ...], int] = {(): root_fd}

    def close(self) -> None:
        for descriptor in self.directories.values():
            os.close(descriptor)
        self.directories.clear()

    def _escape(self, link: str | None) -> PathRefused:
        if link is None:
            return refuse_outside(self.raw, [self.root], self.kind)
        return PathRefused(
            f"{self.kind} path {self.raw}: {link} is a link that leads outside {self.root}"
        )

    def walk(
        self, start: tuple[str, ...], names: Sequence[str], entry: str | None = None
    ) -> tuple[tuple[str, ...], int]:
        """(canonical components, O_PATH descriptor owned by the caller) of `names` from the
        canonical directory `start`; `entry` names a file found inside the path, for messages."""
        pending = deque(names)
        current = list(start)
        links = 0
        via_link: str | None = None
        while pending:
            name = pending.popleft()
            if name in ("", "."):
                continue
            if name == "..":
                if not current:
                    raise self._escape(via_link)
                current.pop()
                continue
            parent = self.directories[tuple(current)]
            try:
                descriptor = os.open(name, _OPEN_PATH, dir_fd=parent)
            except FileNotFoundError:
                if entry is not None:
                    raise PathRefused(
                        f"{self.kind} path {self.raw}: {entry} is a link to nothing"
                    ) from None
                raise PathRefused(f"{self.kind} path {self.raw} does not exist") from None
            except OSError as exc:
                raise PathRefused(f"{self.kind} path {self.raw}: {exc.strerror}") from None
            mode = os.fstat(descriptor).st_mode
            if stat.S_ISLNK(mode):
                target = os.readlink("", dir_fd=descriptor)
                os.close(descriptor)
                links += 1
                if links > MAX_LINKS:
                    raise PathRefused(f"{self.kind} path {self.raw}: too many links")
                via_link = "/".join([*current, name])
                if target.startswith("/"):
                    below = _below(target, self.root_names)
                    if below is None:
                        raise self._escape(via_link)
                    current = []
                    pending.extendleft(reversed(below))
                else:
                    pending.extendleft(reversed(target.split("/")))
                continue
            if stat.S_ISDIR(mode):
                current.append(name)
                key = tuple(current)
                if key in self.directories:
                    os.close(descriptor)
                else:
                    self.directories[key] = descriptor
                continue
            if pending:
                os.close(descriptor)
                raise PathRefused(f"{self.kind} path {self.raw}: {name} is not a directory")
            return (*current, name), descriptor
        return tuple(current), os.dup(self.directories[tuple(current)])

    def listing(self, parts: tuple[str, ...]) -> list[str]:
        descriptor = os.open(
            ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=self.directories[parts]
        )
        try:
            with os.scandir(descriptor) as entries:
                return sorted(entry.name for entry in entries)
        finally:
            os.close(descriptor)


@dataclass
class PinnedFile:
    """One verified regular file, held open."""

    name: str  # its name as the reader sees it, relative to the pinned object
    descriptor: int  # O_PATH
    size: int
    mtime_ns: int

    def reopen(self) -> int:
        """A fresh read-only descriptor of the same inode, with its own offset."""
        return os.open(f"/proc/self/fd/{self.descriptor}", os.O_RDONLY | os.O_CLOEXEC)

    def read(self, limit: int) -> bytes:
        """At most `limit` bytes; a larger file is refused rather than read."""
        if self.size > limit:
            raise PathRefused(f"{self.name} is {self.size} bytes; at most {limit} are read")
        with os.fdopen(self.reopen(), "rb") as stream:
            return stream.read(limit + 1)[:limit]


@dataclass
class Pinned:
    """A file, or a directory with every file in it, verified beneath its root and pinned."""

    located: Located
    is_dir: bool
    files: dict[str, PinnedFile] = field(default_factory=dict)
    directories: list[str] = field(default_factory=list)  # relative, for staging
    readable: Path = Path()  # what readers open: the staging copy, or the canonical path

    def file(self, name: str) -> PinnedFile | None:
        return self.files.get(name)

    def names(self, directory: str = "") -> list[str]:
        """Files directly in `directory` (relative; "" is the pinned directory itself)."""
        prefix = f"{directory}/" if directory else ""
        return sorted(
            name[len(prefix) :]
            for name in self.files
            if name.startswith(prefix) and "/" not in name[len(prefix) :]
        )

    def local(self, canonical: Path) -> Path:
        """Where a reader finds a path inside the pinned object."""
        return self.readable / canonical.relative_to(self.located.path)

    def fingerprint(self) -> str:
        """Cheap identity (names, sizes, mtimes): a changed file reloads a cached model."""
        digest = hashlib.sha256()
        for name, pinned in sorted(self.files.items()):
            digest.update(f"{name}:{pinned.size}:{pinned.mtime_ns};".encode())
        return digest.hexdigest()


def _check_file(name: str, descriptor: int, rules: FileRules, kind: str, raw: str) -> PinnedFile:
    info = os.fstat(descriptor)
    if not stat.S_ISREG(info.st_mode):
        raise PathRefused(
            f"{kind} path {raw}: {name or 'it'} is not a regular file (a FIFO, device or socket "
            "is never read)"
        )
    if info.st_nlink > 1 and not rules.allow_hardlinks:
        raise PathRefused(
            f"{kind} path {raw}: {name or 'the file'} has {info.st_nlink} hard links; a hard "
            "link may be a second name of any file, so it is refused "
            "(MEMAUDIT_ALLOW_HARDLINKS=true accepts them)"
        )
    return PinnedFile(name, descriptor, info.st_size, info.st_mtime_ns)


def _pin_tree(walker: _Walker, pinned: Pinned, rules: FileRules, recursive: bool) -> None:
    top = pinned.located.parts
    seen = {(os.fstat(walker.directories[top]).st_dev, os.fstat(walker.directories[top]).st_ino)}
    queue: list[tuple[tuple[str, ...], str, int]] = [(top, "", 0)]
    while queue:
        parts, relative, depth = queue.pop()
        for entry in walker.listing(parts):
            name = f"{relative}/{entry}" if relative else entry
            child, descriptor = walker.walk(parts, [entry], name)
            info = os.fstat(descriptor)
            if stat.S_ISDIR(info.st_mode):
                os.close(descriptor)
                identity = (info.st_dev, info.st_ino)
                if not recursive or identity in seen:
                    continue
                if depth + 1 > MAX_TREE_DEPTH:
                    raise PathRefused(
                        f"{walker.kind} path {walker.raw} nests deeper than {MAX_TREE_DEPTH}"
                    )
                seen.add(identity)
                pinned.directories.append(name)
                queue.append((child, name, depth + 1))
                continue
            try:
                pinned.files[name] = _check_file(name, descriptor, rules, walker.kind, walker.raw)
            except PathRefused:
                os.close(descriptor)
                raise
            if len(pinned.files) > MAX_TREE_FILES:
                raise PathRefused(
                    f"{walker.kind} path {walker.raw} holds more than {MAX_TREE_FILES} files"
                )


def _stage(pinned: Pinned, name: str) -> Path:
    """A private directory mirroring the pinned object, each file a link to its descriptor."""
    staging = Path(tempfile.mkdtemp(prefix="memaudit-stage-"))  # mode 0700
    top = staging / (name or "root")
    if pinned.is_dir:
        top.mkdir()
        for directory in sorted(pinned.directories):
            (top / directory).mkdir(parents=True, exist_ok=True)
        for relative, file in pinned.files.items():
            os.symlink(f"/proc/self/fd/{file.descriptor}", top / relative)
    else:
        os.symlink(f"/proc/self/fd/{pinned.files[name].descriptor}", top)
    return top


@contextlib.contextmanager
def pin(
    raw: str,
    roots: Sequence[Path],
    *,
    kind: str,
    want: str,
    rules: FileRules = DEFAULT_RULES,
    recursive: bool = False,
) -> Iterator[Pinned]:
    """Resolve `raw` beneath its root and hold it (a "file", or a "dir" and its files) open.

    Inside the block every file is checked: beneath the root, a regular file, one name only
    unless hard links are allowed. `readable` is what a reader may open.
    """
    root, below = locate_root(raw, roots, kind)
    with _pinned(root, below, raw, kind, want, rules, recursive) as pinned:
        yield pinned


def pin_located(
    located: Located,
    *,
    kind: str,
    want: str,
    rules: FileRules = DEFAULT_RULES,
    recursive: bool = False,
) -> contextlib.AbstractContextManager[Pinned]:
    """The same for a place found before: walked again from its root and checked again."""
    raw = str(located.path)
    return _pinned(located.root, list(located.parts), raw, kind, want, rules, recursive)


@contextlib.contextmanager
def _pinned(
    root: Path,
    below: list[str],
    raw: str,
    kind: str,
    want: str,
    rules: FileRules,
    recursive: bool,
) -> Iterator[Pinned]:
    walker = _Walker(root, kind, raw)
    pinned: Pinned | None = None
    staging: Path | None = None
    try:
        parts, descriptor = walker.walk((), below)
        is_dir = stat.S_ISDIR(os.fstat(descriptor).st_mode)
        if is_dir:
            os.close(descriptor)
        if want == "dir" and not is_dir:
            os.close(descriptor)
            raise PathRefused(f"{kind} path {raw} is not a directory")
        if want == "file" and is_dir:
            raise PathRefused(f"{kind} path {raw} is a directory, not a file")
        pinned = Pinned(Located(root, parts), is_dir)
        name = parts[-1] if parts else root.name
        if is_dir:
            _pin_tree(walker, pinned, rules, recursive)
        else:
            try:
                pinned.files[name] = _check_file(name, descriptor, rules, kind, raw)
            except PathRefused:
                os.close(descriptor)
                raise
        walker.close()
        if rules.stage:
            staging = _stage(pinned, name)
            pinned.readable = staging
        else:
            pinned.readable = pinned.located.path
        yield pinned
    finally:
        walker.close()
        if pinned is not None:
            for file in pinned.files.values():
                os.close(file.descriptor)
        if staging is not None:
            shutil.rmtree(staging.parent, ignore_errors=True)
