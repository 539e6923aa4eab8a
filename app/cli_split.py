"""`memaudit split`: is a candidate member / non-member split fit to audit, before any model
runs? Local files, no service: the blind baseline of the split, matched subsets on request, and
the combined labelled dataset ready to audit."""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

from core.config import Settings
from core.inspection.datasets import DatasetError
from worker.engine.blind_baseline import DELTA
from worker.split_builder import BuiltSplit, SplitError, build_split, read_texts, write_jsonl

READINGS = {
    "confounded": "confounded: the texts alone tell members from non-members, so every "
    "membership score on this split is inconclusive",
    "no_confound_detected": "no confound detected by the blind baseline",
}


def add_split_parser(commands: Any) -> None:
    """The `split` subcommand (`commands` is the parser's subparsers)."""
    split = commands.add_parser(
        "split", help="the blind baseline of a member / non-member split; matched subsets"
    )
    split.add_argument("members", type=Path, help="candidate members: JSONL with a text field")
    split.add_argument("nonmembers", type=Path, help="candidate non-members: the same")
    split.add_argument(
        "--match",
        action="store_true",
        help="draw matched subsets (blind propensity and length) and measure them again",
    )
    split.add_argument(
        "--out", type=Path, default=None, help="write the combined labelled JSONL here"
    )
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--json", action="store_true", help="print the report as JSON")
    split.set_defaults(handler=cmd_split)


def cmd_split(_settings: Settings, args: argparse.Namespace) -> int:
    try:
        members, nonmembers = _read(args.members), _read(args.nonmembers)
        built = build_split(members, nonmembers, match=args.match, seed=args.seed)
    except SplitError as exc:
        if exc.report is not None:
            _print(exc.report, args.json)
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (DatasetError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out is not None:
        _write(built, args.out)
        built.report["out"] = {"path": str(args.out), "n_records": len(built.records)}
    _print(built.report, args.json)
    return 0


def _read(path: Path) -> list[dict[str, Any]]:
    try:
        return read_texts(path)
    except DatasetError as exc:
        raise DatasetError(exc.line_no, f"{path}: {exc}") from None
    except OSError as exc:
        raise OSError(f"{path}: {exc.strerror or exc}") from None


def _write(built: BuiltSplit, path: Path) -> None:
    """All or nothing: written beside the target, then moved over it."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out:
            write_jsonl(built.records, out)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def _print(report: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(report, indent=2))
        return
    print(f"members: {report['n_members']}, non-members: {report['n_nonmembers']}")
    if report["texts_in_both"]:
        print(f"warning: {report['texts_in_both']} texts are in both sets")
    print("blind baseline (no model):")
    _print_baseline(report["before"])
    matching = report.get("matching")
    if matching is not None:
        print(
            f"matched on {' and '.join(matching['matched_on'])} (caliper "
            f"{matching['caliper_sd']} SD, seed {matching['seed']}): kept "
            f"{matching['kept_members']} of {report['n_members']} members and "
            f"{matching['kept_nonmembers']} of {report['n_nonmembers']} non-members"
        )
        if report.get("after") is not None:
            print("blind baseline of the matched subsets (fresh cross-validation):")
            _print_baseline(report["after"])
    if "out" in report:
        print(f"wrote {report['out']['n_records']} labelled records to {report['out']['path']}")


def _print_baseline(baseline: dict[str, Any]) -> None:
    auroc, tpr = baseline["auroc"], baseline["tpr_at_0.01_fpr"]
    print(f"  n: {baseline['n_members']} members, {baseline['n_nonmembers']} non-members")
    print(f"  AUROC {_number(auroc['value'])} (95% CI {_interval(auroc['ci95'])})")
    if tpr["value"] is None:
        print("  TPR@1%FPR: none (it needs at least 100 non-members)")
    else:
        print(f"  TPR@1%FPR {_number(tpr['value'])} (95% CI {_interval(tpr['ci95'])})")
    print(f"  reading: {READINGS[baseline['reading']]}")
    high = auroc["ci95"][1]
    if baseline["reading"] != "confounded" and high is not None and high > 0.5 + DELTA:
        print(f"  (the CI reaches {high:.3f}: a confound that large is not ruled out at this n)")


def _number(value: float | None) -> str:
    return "none" if value is None else f"{value:.3f}"


def _interval(ci: list[float | None]) -> str:
    return f"{_number(ci[0])}-{_number(ci[1])}"
