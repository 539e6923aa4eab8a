"""Paths from users resolved beneath their roots, link by link, on real files, links and FIFOs."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

from core.confinement import MAX_TREE_ENTRIES, FileRules, PathRefused, Root, pin

UNSTAGED = FileRules(stage=False)


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path]:
    """A root holding a model folder and a blob store (as the Hub cache lays it out), and a
    secret outside it."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "model").mkdir(parents=True)
    (root / "blobs").mkdir()
    outside.mkdir()
    (root / "model" / "config.json").write_text('{"a": 1}')
    (root / "blobs" / "weights").write_text("weights")
    (outside / "secret").write_text("secret")
    return root, outside


def _read(raw: str, root: Path, rules: FileRules = FileRules(), **options) -> dict[str, str]:
    with pin(raw, [root], kind="model", rules=rules, **options) as pinned:
        if not pinned.is_dir:
            return {"": pinned.readable.read_text()}
        return {name: (pinned.readable / name).read_text() for name in pinned.files}


def test_links_within_the_root_are_followed(tree) -> None:
    root, _ = tree
    os.symlink("../blobs/weights", root / "model" / "weights")  # relative, as the Hub cache
    os.symlink(root / "blobs" / "weights", root / "model" / "absolute")  # absolute, inside
    for rules in (FileRules(), UNSTAGED):
        found = _read(str(root / "model"), root, rules, want="dir")
        assert found == {"config.json": '{"a": 1}', "weights": "weights", "absolute": "weights"}


@pytest.mark.parametrize(
    "target", ["outside/secret", "../../outside/secret", "../blobs/../../outside/secret"]
)
def test_a_file_linked_out_of_the_root_refuses_the_folder(tree, target) -> None:
    root, outside = tree
    link = root / "model" / "weights"
    if target.startswith("outside"):
        os.symlink(outside / "secret", link)  # absolute, outside
    else:
        os.symlink(target, link)
    with pytest.raises(PathRefused, match="model/weights is a link that leads outside"):
        _read(str(root / "model"), root, want="dir")


def test_outside_paths_get_one_answer_whether_or_not_they_exist(tree) -> None:
    root, outside = tree
    answers = set()
    for raw in [
        outside / "secret",
        outside / "missing",
        outside,
        Path("/etc/passwd"),
        Path("/nope"),
    ]:
        with pytest.raises(PathRefused) as refused:
            _read(str(raw), root, want="file")
        answers.add(str(refused.value).replace(str(raw), "<path>"))
    assert len(answers) == 1, answers
    for raw in [f"{root}/../outside/secret", f"{root}/../outside/missing"]:
        with pytest.raises(PathRefused, match="is outside the folders you may read"):
            _read(raw, root, want="file")


def test_a_second_name_is_refused_unless_allowed(tree) -> None:
    root, _ = tree
    os.link(root / "blobs" / "weights", root / "model" / "weights")
    with pytest.raises(PathRefused, match="has 2 hard links"):
        _read(str(root / "model"), root, want="dir")
    allowed = _read(str(root / "model"), root, FileRules(allow_hardlinks=True), want="dir")
    assert allowed["weights"] == "weights"


def test_fifos_and_devices_are_never_opened(tree) -> None:
    root, _ = tree
    os.mkfifo(root / "model" / "tokenizer.json")
    done = threading.Event()

    def attempt() -> None:
        with pytest.raises(PathRefused, match="not a regular file"):
            _read(str(root / "model"), root, want="dir")
        done.set()

    thread = threading.Thread(target=attempt, daemon=True)
    thread.start()
    thread.join(5)
    assert done.is_set(), "reading a folder with a FIFO in it blocked"
    os.symlink("/dev/zero", root / "zero")
    with pytest.raises(PathRefused, match="outside"):
        _read(str(root / "zero"), root, want="file")


def test_loops_and_non_directories(tree) -> None:
    root, _ = tree
    os.symlink("loop", root / "loop")
    with pytest.raises(PathRefused, match="too many links"):
        _read(str(root / "loop"), root, want="file")
    with pytest.raises(PathRefused, match=r"config\.json is not a directory"):
        _read(str(root / "model" / "config.json" / "x"), root, want="file")
    with pytest.raises(PathRefused, match="must be an absolute path"):
        _read("model/config.json", root, want="file")


def test_a_swap_after_the_check_is_not_read_when_staged(tree) -> None:
    """Between the check and the read, a submitter who can write the root swaps the file for a
    link out of it. Staged, the reader reopens the checked inode; unstaged it would follow."""
    root, outside = tree

    def swap() -> None:
        os.unlink(root / "model" / "config.json")
        os.symlink(outside / "secret", root / "model" / "config.json")

    with pin(str(root / "model"), [root], kind="model", want="dir") as pinned:
        swap()
        assert (pinned.readable / "config.json").read_text() == '{"a": 1}'
    (root / "model" / "config.json").unlink()
    (root / "model" / "config.json").write_text('{"a": 1}')
    with pin(str(root / "model"), [root], kind="model", want="dir", rules=UNSTAGED) as pinned:
        swap()
        # The documented limit of unstaged reading: only for roots no submitter can write.
        assert (pinned.readable / "config.json").read_text() == "secret"


def test_the_staging_copy_is_private_made_only_when_read_by_path_and_removed(tree) -> None:
    root, _ = tree
    with pin(str(root / "model"), [root], kind="model", want="dir") as pinned:
        assert pinned.file("config.json").read(100) == b'{"a": 1}'
        assert pinned.staging is None  # read through its descriptor: no copy needed
        staging = pinned.readable.parent
        assert staging.stat().st_mode & 0o777 == 0o700
        assert os.readlink(pinned.readable / "config.json").startswith("/proc/self/fd/")
    assert not staging.exists()


def test_recursive_trees_follow_links_to_folders_inside_only(tree) -> None:
    root, outside = tree
    (root / "model" / "unet").mkdir()
    (root / "model" / "unet" / "w.safetensors").write_text("u")
    os.symlink("../../blobs", root / "model" / "unet" / "shared")
    found = _read(str(root / "model"), root, want="dir", recursive=True)
    assert found["unet/w.safetensors"] == "u" and found["unet/shared/weights"] == "weights"
    os.symlink(outside, root / "model" / "escape")
    with pytest.raises(PathRefused, match="model/escape is a link that leads outside"):
        _read(str(root / "model"), root, want="dir", recursive=True)


def _open_descriptors() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_tree_too_large_is_a_refusal_not_a_crash(tree) -> None:
    root, _ = tree
    for index in range(MAX_TREE_ENTRIES + 10):  # folders hold no file, yet count
        (root / "model" / f"d{index}").mkdir()
    before = _open_descriptors()
    for recursive in (False, True):
        with pytest.raises(PathRefused, match="entries"):
            _read(str(root / "model"), root, want="dir", recursive=recursive)
    assert _open_descriptors() == before  # nothing left open


def test_a_granted_folder_turned_into_a_link_is_refused(tree) -> None:
    """A team that can write its own folder replaces it with a link to another's."""
    root, _ = tree
    (root / "team-b").mkdir()
    (root / "team-b" / "secret").write_text("b's data")
    granted = Root(root, ("team-a",))
    (root / "team-a").symlink_to(root / "team-b")
    secret = str(root / "team-a" / "secret")
    with (
        pytest.raises(PathRefused, match="is a link or not a folder"),
        pin(secret, [granted], kind="model", want="file"),
    ):
        pass
    # The operator's own root may be reached through a link the operator made.
    (root.parent / "alias").symlink_to(root)
    with pin(str(root.parent / "alias" / "model"), [root.parent / "alias"], kind="model",
             want="dir") as pinned:  # fmt: skip
        assert "config.json" in pinned.files
