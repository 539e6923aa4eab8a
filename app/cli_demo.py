"""`memaudit demo`, `audit`, `kk` and `wilt`: the demo audits submitted to a running service,
local audits, and the puzzle and rule sets written as JSONL."""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

from core.config import Settings

log = logging.getLogger("memaudit")


def _request(url: str, key: str | None = None, body: dict | None = None) -> dict:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def _wait_ready(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _request(f"{url}/readyz")
            return
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.5)


DEMO_CHECKS = [
    {"kind": "extraction", "params": {"prefix_tokens": 10, "suffix_tokens": 16}},
    {"kind": "membership", "params": {}},
    {"kind": "loss", "params": {}},
]


REAL_MODEL_CHECKS = [
    {"kind": "extraction", "params": {"prefix_tokens": 32, "suffix_tokens": 32}},
    {"kind": "membership", "params": {}},
]


def write_demo_files(
    model_root: Path, data_dir: Path, real_model: bool = False
) -> tuple[Path, Path]:
    """The demo model (a folder under `model_root`) and its dataset (a JSONL file in
    `data_dir`); both are reused when already there."""
    if real_model:
        from worker.real_model import install_under, licence_records

        model_dir = install_under(model_root)
        dataset_path = data_dir / "licences.jsonl"
        dataset_path.parent.mkdir(parents=True, exist_ok=True)
        dataset_path.write_text("".join(json.dumps(r) + "\n" for r in licence_records()))
        print(f"SmolLM2-135M-Instruct (GGUF) in {model_dir}; licence texts vs shuffled copies")
        return model_dir, dataset_path
    from worker.demo import build_demo

    model_dir = model_root / "demo-canary-gpt2"
    dataset_path = data_dir / "canaries.jsonl"
    print(f"building the demo model in {model_dir} (a tiny GPT-2 that memorizes canaries)...")
    build_demo(model_dir, dataset_path)
    return model_dir, dataset_path


def build_demo_files(settings: Settings, real_model: bool = False) -> tuple[Path, Path]:
    """The demo files inside the service's first model and data roots, where it may read them."""
    settings.ensure_dirs()
    return write_demo_files(
        settings.model_root_paths[0], settings.data_root_paths[0] / "demo", real_model
    )


def _print_findings(summary: dict) -> None:
    extraction = summary.get("extraction", {})
    for group in ("members", "nonmembers"):
        if extraction.get(group, {}).get("n"):
            stats = extraction[group]
            print(
                f"  extraction, {group}: greedy rate {stats['greedy_rate']:.0%}, best (n,p) "
                f"rate {max(stats['max_rate'].values()):.0%}"
            )
    membership = summary.get("membership", {})
    blind = membership.get("blind_baseline") or {}
    if blind.get("reading") == "confounded":
        print(
            "  membership cannot be assessed: the member and non-member texts differ without "
            f"the model (blind AUROC {blind['auroc']['value']:.2f}); the AUROCs below are withheld"
        )
    elif blind.get("reading") == "no_confound_detected":
        print(f"  no confound detected by the blind baseline (AUROC {blind['auroc']['value']:.2f})")
    for name, score in membership.get("scores", {}).items():
        auroc = (score.get("auroc") or {}).get("value")
        if auroc is not None:
            reading = (score.get("reading") or {}).get("reading", "")
            print(f"  membership {name}: AUROC {auroc:.3f} ({reading.replace('_', ' ')})")


def submit_demo(
    settings: Settings, url: str, key: str, wait: bool, real_model: bool = False
) -> str:
    model_dir, dataset_path = build_demo_files(settings, real_model)
    body = {
        "model": {"uri": f"path:{model_dir}"},
        "dataset": {"uri": f"path:{dataset_path}"},
        "checks": REAL_MODEL_CHECKS if real_model else DEMO_CHECKS,
        "labels": {"source": "demo-real-model" if real_model else "demo"},
    }
    audit = _request(f"{url}/v1/audits", key, body)
    while wait and audit["status"] in ("queued", "running"):
        time.sleep(1)
        audit = _request(f"{url}/v1/audits/{audit['id']}", key)
    report = f"{settings.public_url.rstrip('/')}/audits/{audit['id']}"
    print(f"\nDemo audit {audit['id']} is {audit['status']}. Report: {report}")
    if audit["status"] == "succeeded":
        _print_findings(audit["summary"])
    elif audit.get("error"):
        print("  error:", audit["error"])
    print("Sign in with the key in", settings.admin_key_path)
    return audit["id"]


def demo_when_ready(settings: Settings, url: str) -> None:
    try:
        _wait_ready(url)
        key = settings.admin_key_path.read_text().strip()
        submit_demo(settings, url, key, wait=True)
    except Exception:
        log.exception("the demo audit could not be submitted")


def write_demo_out(folder: str, real_model: bool = False) -> None:
    """`demo --out`: the files a user registers and uploads (see "Use with MLflow"), written
    without any service."""
    import torch

    # The demo model is tiny: one thread trains it as fast as two, and does not fight the
    # servers a user starts beside it for the cores.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        out = Path(folder).expanduser().resolve()
        model_dir, dataset_path = write_demo_files(out, out, real_model)
    finally:
        torch.set_num_threads(threads)
    print(f"model: {model_dir}\ndataset: {dataset_path}")


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
    if args.out:
        write_demo_out(args.out, args.real_model)
        return 0
    if args.no_submit:
        build_demo_files(settings, args.real_model)
        return 0
    key = args.key or settings.admin_key_path.read_text().strip()
    submit_demo(
        settings, args.url or settings.public_url, key, wait=args.wait, real_model=args.real_model
    )
    return 0


def _check_spec(text: str) -> dict:
    """`extraction` or `extraction:{"suffix_tokens": 32}`."""
    kind, _, params = text.partition(":")
    return {"kind": kind, "params": json.loads(params) if params else {}}


def cmd_audit(_settings: Settings, args: argparse.Namespace) -> int:
    """Run checks in this process on local files, without the service."""
    from worker.local import audit_texts

    with open(args.dataset) as stream:
        records = [json.loads(line) for line in stream if line.strip()]
    result = audit_texts(
        args.model,
        records,
        [_check_spec(c) for c in args.check],
        reference_model=args.reference_model,
        batch_size=args.batch_size,
    )
    summaries = {kind: value["summary"] for kind, value in result.items()}
    output = json.dumps(result if args.samples else summaries, indent=2, default=str)
    if args.output:
        Path(args.output).write_text(output)
    else:
        print(output)
    return 0


def cmd_kk_generate(_settings: Settings, args: argparse.Namespace) -> int:
    """Knights-and-Knaves puzzles with their perturbations, as JSONL: fine-tune on exactly the
    puzzles you will audit."""
    from worker.engine.reasoning.kk_sets import puzzle_records

    records = puzzle_records(
        args.people,
        n_test=args.test,
        n_train=args.train,
        depth=args.depth,
        width=args.width,
        seed=args.seed,
    )
    stream = open(args.output, "w") if args.output else sys.stdout  # noqa: SIM115
    try:
        count = 0
        for record in records:
            stream.write(json.dumps(record) + "\n")
            count += 1
    finally:
        if args.output:
            stream.close()
    if args.output:
        print(f"wrote {count} puzzles to {args.output}", file=sys.stderr)
    return 0


def cmd_wilt_rules(_settings: Settings, args: argparse.Namespace) -> int:
    """The built-in WILT rules as a `wilt` dataset: one record per rule."""
    from worker.engine.wilt_rules import rule_set

    lines = [
        json.dumps({"id": f"rule-{rule.id}", "rule": rule.id, "family": rule.family})
        for rule in rule_set(args.set)
    ]
    output = "".join(line + "\n" for line in lines)
    if args.output:
        Path(args.output).write_text(output)
        print(f"wrote {len(lines)} rules to {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(output)
    return 0
