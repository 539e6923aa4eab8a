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
# Pinned files stay open while they are read: well below the usual 1,024 descriptors a process
# may hold (a model directory has tens; a pipeline or an MLflow version a few hundred).
MAX_TREE_FILES = 512
MAX_TREE_ENTRIES = 10_000  # entries looked at (folders included) before a tree is refused
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
class Root:
    """A folder nothing may leave: an operator's root (`base`, whose own path may run through
    links the operator made), or a folder granted inside one, reached from it with no link on
    the way (`below`), so whoever writes the folder cannot point it somewhere else."""

    base: Path
    below: tuple[str, ...] = ()

    @property
    def path(self) -> Path:
        return self.base.joinpath(*self.below)

    def names(self) -> list[str]:
        """The absolute paths that name this root: as configured, and through real paths."""
        real = Path(os.path.realpath(self.base)).joinpath(*self.below)
        return list(dict.fromkeys(str(p).rstrip("/") or "/" for p in (self.path, real)))

    def __str__(self) -> str:
        return str(self.path)


RootLike = Path | Root


def as_root(root: RootLike) -> Root:
    return root if isinstance(root, Root) else Root(root)


@dataclass(frozen=True)
class Located:
    """A file or directory found beneath a root: the root, and the canonical components
    below it (every link already followed, so each is a real directory or the object)."""

    root: Root
    parts: tuple[str, ...]

    @property
    def path(self) -> Path:
        return self.root.path.joinpath(*self.parts)


def refuse_outside(raw: str, roots: Sequence[RootLike], kind: str) -> PathRefused:
    """The one refusal for a path outside the roots, whether or not it exists."""
    allowed = ", ".join(str(root) for root in roots) or "none"
    return PathRefused(f"{kind} path {raw} is outside the folders you may read ({allowed})")


def _below(path: str, root_names: Sequence[str]) -> list[str] | None:
    """The components of an absolute path below one of the root's names, or None."""
    for name in root_names:
        if path == name:
            return []
        prefix = name if name.endswith("/") else name + "/"
        if path.startswith(prefix):
            return [part for part in path[len(prefix) :].split("/") if part]
    return None


def locate_root(raw: str, roots: Sequence[RootLike], kind: str) -> tuple[Root, list[str]]:
    """The root a user path names, and its components below it; lexical, nothing opened."""
    if not raw or "\x00" in raw or not raw.startswith("/"):
        raise PathRefused(f"{kind} path must be an absolute path: {raw!r}")
    matches = [
        (root, below)
        for root in map(as_root, roots)
        if (below := _below(raw, root.names())) is not None
    ]
    if not matches:
        raise refuse_outside(raw, roots, kind)
    # Nested roots: the innermost one confines most tightly.
    return min(matches, key=lambda match: len(match[1]))


Stack = list[tuple[str, int]]  # (name, O_PATH descriptor) of each directory below the root


def _close(descriptors: Sequence[int]) -> None:
    for descriptor in descriptors:
        os.close(descriptor)


class _Walker:
    """Resolves paths beneath one root from its descriptor. Only the root's descriptor lives
    as long as the walker; each walk closes what it opened but the object it returns."""

    def __init__(self, root: Root, kind: str, raw: str) -> None:
        self.root, self.kind, self.raw = root, kind, raw
        self.root_names = root.names()
        self.root_fd = self._open_root()

    def _open_root(self) -> int:
        try:
            descriptor = os.open(self.root.base, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise PathRefused(
                f"the {self.kind} root {self.root.base} cannot be opened ({exc.strerror})"
            ) from None
        for part in self.root.below:
            try:
                child = os.open(part, _OPEN_PATH, dir_fd=descriptor)
            except OSError as exc:
                os.close(descriptor)
                raise PathRefused(
                    f"the granted {self.kind} folder {self.root} cannot be opened ({exc.strerror})"
                ) from None
            os.close(descriptor)
            descriptor = child
            if not stat.S_ISDIR(os.fstat(descriptor).st_mode):
                os.close(descriptor)
                raise PathRefused(
                    f"the granted {self.kind} folder {self.root} is a link or not a folder: "
                    "a granted folder is never followed elsewhere"
                )
        return descriptor

    def close(self) -> None:
        if self.root_fd >= 0:
            os.close(self.root_fd)
            self.root_fd = -1

    def _escape(self, link: str | None) -> PathRefused:
        if link is None:
            return refuse_outside(self.raw, [self.root], self.kind)
        return PathRefused(
            f"{self.kind} path {self.raw}: {link} is a link that leads outside {self.root}"
        )

    def _refuse(self, exc: OSError) -> PathRefused:
        return PathRefused(f"{self.kind} path {self.raw}: {exc.strerror or exc}")

    def directory(self, stack: Stack) -> int:
        return stack[-1][1] if stack else self.root_fd

    def walk(
        self, start: Stack, names: Sequence[str], entry: str | None = None
    ) -> tuple[tuple[str, ...], int]:
        """(canonical components, O_PATH descriptor the caller owns) of `names` from the
        directory whose stack is `start` (borrowed, left open); `entry` names a file found
        inside the path, for messages."""
        pending = deque(names)
        stack = list(start)
        owned: list[int] = []
        links = 0
        via_link: str | None = None

        def pop() -> None:
            _, descriptor = stack.pop()
            if descriptor in owned:
                owned.remove(descriptor)
                os.close(descriptor)

        try:
            while pending:
                name = pending.popleft()
                if name in ("", "."):
                    continue
                if name == "..":
                    if not stack:
                        raise self._escape(via_link)
                    pop()
                    continue
                try:
                    descriptor = os.open(name, _OPEN_PATH, dir_fd=self.directory(stack))
                except FileNotFoundError:
                    if entry is not None:
                        raise PathRefused(
                            f"{self.kind} path {self.raw}: {entry} is a link to nothing"
                        ) from None
                    raise PathRefused(f"{self.kind} path {self.raw} does not exist") from None
                except OSError as exc:
                    raise self._refuse(exc) from None
                mode = os.fstat(descriptor).st_mode
                if stat.S_ISLNK(mode):
                    try:
                        target = os.readlink("", dir_fd=descriptor)
                    finally:
                        os.close(descriptor)
                    links += 1
                    if links > MAX_LINKS:
                        raise PathRefused(f"{self.kind} path {self.raw}: too many links")
                    via_link = "/".join([*(n for n, _ in stack), name])
                    if target.startswith("/"):
                        below = _below(target, self.root_names)
                        if below is None:
                            raise self._escape(via_link)
                        while stack:
                            pop()
                        pending.extendleft(reversed(below))
                    else:
                        pending.extendleft(reversed(target.split("/")))
                    continue
                if stat.S_ISDIR(mode):
                    stack.append((name, descriptor))
                    owned.append(descriptor)
                    continue
                if pending:
                    os.close(descriptor)
                    raise PathRefused(f"{self.kind} path {self.raw}: {name} is not a directory")
                return (*(n for n, _ in stack), name), descriptor
            parts = tuple(n for n, _ in stack)
            return parts, os.dup(self.directory(stack))
        finally:
            _close(owned)

    def open_stack(self, parts: Sequence[str]) -> Stack:
        """Descriptors of a canonical directory and its parents (the caller closes them); a
        component that is no longer a real directory means the tree changed: refused."""
        stack: Stack = []
        try:
            for part in parts:
                descriptor = os.open(part, _OPEN_PATH, dir_fd=self.directory(stack))
                stack.append((part, descriptor))
                if not stat.S_ISDIR(os.fstat(descriptor).st_mode):
                    raise PathRefused(f"{self.kind} path {self.raw} changed while it was read")
        except OSError as exc:
            _close([d for _, d in stack])
            raise self._refuse(exc) from None
        except PathRefused:
            _close([d for _, d in stack])
            raise
        return stack

    def listing(self, directory: int) -> list[str]:
        try:
            descriptor = os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=directory)
        except OSError as exc:
            raise self._refuse(exc) from None
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
    # Identity for a model cache: the inode, and times a writer can reset (mtime) or not (ctime).
    identity: str

    def reopen(self) -> int:
        """A fresh read-only descriptor of the same inode, with its own offset."""
        try:
            return os.open(f"/proc/self/fd/{self.descriptor}", os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise PathRefused(f"{self.name} cannot be read ({exc.strerror})") from None

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
    name: str  # the pinned object's own name, kept by its staging copy
    stage: bool  # readers open a staging copy of pinned descriptors (see FileRules)
    files: dict[str, PinnedFile] = field(default_factory=dict)
    directories: list[str] = field(default_factory=list)  # relative, for staging
    staging: Path | None = None

    @property
    def readable(self) -> Path:
        """What a reader opens by path: the staging copy, made on first use (checks that read
        through the descriptors never need one), or the checked canonical path."""
        if not self.stage:
            return self.located.path
        if self.staging is None:
            self.staging = _stage(self)
        return self.staging

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
        """Cheap identity (names, sizes, inodes, times): a changed file reloads a cached model,
        even one rewritten at the same size with its mtime set back (ctime cannot be)."""
        digest = hashlib.sha256()
        for name, pinned in sorted(self.files.items()):
            digest.update(f"{name}:{pinned.size}:{pinned.identity};".encode())
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
    identity = f"{info.st_dev}:{info.st_ino}:{info.st_mtime_ns}:{info.st_ctime_ns}"
    return PinnedFile(name, descriptor, info.st_size, identity)


def _pin_tree(walker: _Walker, pinned: Pinned, rules: FileRules, recursive: bool) -> None:
    """Every file of the pinned directory (and, recursive, of its sub-folders) checked and
    held; a sub-folder's descriptors are open only while it is listed."""
    pending: list[tuple[tuple[str, ...], str, int]] = [(pinned.located.parts, "", 0)]
    seen: set[tuple[int, int]] = set()
    visited = 0
    while pending:
        parts, relative, depth = pending.pop()
        stack = walker.open_stack(parts)
        try:
            directory = walker.directory(stack)
            info = os.fstat(directory)
            if (info.st_dev, info.st_ino) in seen:  # reached again through a link
                continue
            seen.add((info.st_dev, info.st_ino))
            if relative:
                pinned.directories.append(relative)
            for entry in walker.listing(directory):
                visited += 1
                if visited > MAX_TREE_ENTRIES or len(pinned.files) >= MAX_TREE_FILES:
                    raise PathRefused(
                        f"{walker.kind} path {walker.raw} holds more than {MAX_TREE_FILES} "
                        f"files or {MAX_TREE_ENTRIES} entries"
                    )
                name = f"{relative}/{entry}" if relative else entry
                child, descriptor = walker.walk(stack, [entry], name)
                if stat.S_ISDIR(os.fstat(descriptor).st_mode):
                    os.close(descriptor)
                    if recursive:
                        if depth + 1 > MAX_TREE_DEPTH:
                            raise PathRefused(
                                f"{walker.kind} path {walker.raw} nests deeper than "
                                f"{MAX_TREE_DEPTH}"
                            )
                        pending.append((child, name, depth + 1))
                    continue
                try:
                    pinned.files[name] = _check_file(
                        name, descriptor, rules, walker.kind, walker.raw
                    )
                except PathRefused:
                    os.close(descriptor)
                    raise
        finally:
            _close([descriptor for _, descriptor in stack])


def _stage(pinned: Pinned) -> Path:
    """A private directory mirroring the pinned object, each file a link to its descriptor."""
    name = pinned.name
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
    roots: Sequence[RootLike],
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
    root: Root,
    below: list[str],
    raw: str,
    kind: str,
    want: str,
    rules: FileRules,
    recursive: bool,
) -> Iterator[Pinned]:
    pinned: Pinned | None = None
    walker = _Walker(root, kind, raw)
    try:
        parts, descriptor = walker.walk([], below)
        is_dir = stat.S_ISDIR(os.fstat(descriptor).st_mode)
        if is_dir:
            os.close(descriptor)
        if want == "dir" and not is_dir:
            os.close(descriptor)
            raise PathRefused(f"{kind} path {raw} is not a directory")
        if want == "file" and is_dir:
            raise PathRefused(f"{kind} path {raw} is a directory, not a file")
        name = parts[-1] if parts else root.path.name
        pinned = Pinned(Located(root, parts), is_dir, name, rules.stage)
        if is_dir:
            _pin_tree(walker, pinned, rules, recursive)
        else:
            try:
                pinned.files[name] = _check_file(name, descriptor, rules, kind, raw)
            except PathRefused:
                os.close(descriptor)
                raise
        walker.close()
        yield pinned
    finally:
        walker.close()
        if pinned is not None:
            _close([file.descriptor for file in pinned.files.values()])
            if pinned.staging is not None:
                shutil.rmtree(pinned.staging.parent, ignore_errors=True)
