"""`memaudit split` on local files: the blind baseline, matched subsets, the labelled output,
and one clear line for bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from app.cli import main
from tests.conftest import REPO, write_jsonl
from tests.worker.engine.test_split_matching import _texts


def _sets(tmp_path: Path) -> tuple[Path, Path]:
    members = _texts(150, 1, share_a=0.7, words=(15, 40))
    nonmembers = _texts(150, 2, share_a=0.3, words=(8, 30))
    return (
        write_jsonl(
            tmp_path / "members.jsonl", [{"id": f"m{i}", "text": t} for i, t in enumerate(members)]
        ),
        write_jsonl(tmp_path / "nonmembers.jsonl", [{"text": t} for t in nonmembers]),
    )


def _records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_it_reports_the_blind_baseline_and_writes_both_sets_labelled(tmp_path, capsys) -> None:
    members, nonmembers = _sets(tmp_path)
    out = tmp_path / "split.jsonl"
    assert main(["split", str(members), str(nonmembers), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "members: 150, non-members: 150" in printed
    assert "reading: confounded" in printed and "AUROC 0." in printed and "TPR@1%FPR" in printed
    assert "matched" not in printed
    written = _records(out)
    assert sorted(r["member"] for r in written) == [False] * 150 + [True] * 150
    # Shuffled (seeded), so no shard of an audit of it holds one side only.
    assert [r["member"] for r in written[:150]].count(True) not in (0, 150)
    first = next(r for r in written if r.get("id") == "m0")
    assert first == {"id": "m0", "text": _records(members)[0]["text"], "member": True}


def test_match_keeps_pairs_and_measures_them_again(tmp_path, capsys) -> None:
    members, nonmembers = _sets(tmp_path)
    out = tmp_path / "matched.jsonl"
    argv = ["split", str(members), str(nonmembers), "--match", "--out", str(out), "--json"]
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    kept = report["matching"]["kept_members"]
    assert report["before"]["reading"] == "confounded"
    assert report["after"]["reading"] == "no_confound_detected"
    assert report["after"]["n_members"] == report["after"]["n_nonmembers"] == kept
    assert 40 <= kept < 150 and report["out"]["n_records"] == 2 * kept
    written = _records(out)
    assert sum(r["member"] for r in written) == kept == len(written) - kept
    member_texts = {r["text"] for r in _records(members)}
    assert all((r["text"] in member_texts) == r["member"] for r in written)
    # The same seed, the same subsets; the text output says what was kept.
    again = tmp_path / "again.jsonl"
    assert main(["split", str(members), str(nonmembers), "--match", "--out", str(again)]) == 0
    printed = capsys.readouterr().out
    assert again.read_bytes() == out.read_bytes()
    assert f"kept {kept} of 150 members and {kept} of 150 non-members" in printed
    assert "no confound detected by the blind baseline" in printed


@pytest.mark.parametrize(
    ("records", "message"),
    [
        ([{"text": "a b c"}, {"txt": "d e f"}], "line 2: field 'text' must be a string"),
        ([{"text": "only one"}], "the member set has 1 records; at least 2 are needed"),
    ],
)
def test_bad_input_is_one_error_line(tmp_path, capsys, records, message) -> None:
    _, nonmembers = _sets(tmp_path)
    members = write_jsonl(tmp_path / "bad.jsonl", records)
    out = tmp_path / "never.jsonl"
    assert main(["split", str(members), str(nonmembers), "--out", str(out)]) == 2
    error = capsys.readouterr().err
    assert error.startswith("error: ") and message in error
    assert not out.exists()


def test_a_missing_file_is_named(tmp_path, capsys) -> None:
    _, nonmembers = _sets(tmp_path)
    assert main(["split", str(tmp_path / "nope.jsonl"), str(nonmembers)]) == 2
    assert "nope.jsonl" in capsys.readouterr().err


def test_sets_matching_cannot_pair_fail_with_the_baseline_shown(tmp_path) -> None:
    members = write_jsonl(
        tmp_path / "m.jsonl",
        [{"text": t} for t in _texts(40, 1, share_a=0.5, words=(12, 30), marker=" — as noted")],
    )
    nonmembers = write_jsonl(
        tmp_path / "n.jsonl", [{"text": t} for t in _texts(40, 2, share_a=0.5, words=(12, 30))]
    )
    done = subprocess.run(
        [sys.executable, "-m", "app.cli", "split", str(members), str(nonmembers), "--match"],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr
    assert "reading: confounded" in done.stdout
    assert "error: matching kept" in done.stderr and "barely overlap" in done.stderr
