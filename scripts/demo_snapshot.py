#!/usr/bin/env python3
"""Record every public response of memaudit's demo audits as one canonical, normalised JSON file.

Run it before and after an internal refactor and diff the two files: they must be identical
when nothing public changed. Only the CLI (START, DEMOS below) and the HTTP API / dashboard
are used, so no internal module path is imported here.

    cd <checkout> && PYTHONPATH=$PWD .venv/bin/python scripts/demo_snapshot.py OUT.json

The demos audit a causal LM (extraction, membership, loss): the other families' outputs are held
by their own tests. The restructure into one folder per check family (issue #27) was checked
with it: the files written before and after were byte-identical.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

# ---- how to start the service and submit the demos (the only lines a module move may touch) ----
START = [sys.executable, "-m", "app.cli", "serve", "--host", "127.0.0.1", "--port", "{port}"]
DEMOS = [  # submitted one after another, each waited for: audit-1, audit-2, ... in this order
    [sys.executable, "-m", "app.cli", "demo", "--wait", "--url", "{url}", "--key", "{key}"],
    [sys.executable, "-m", "app.cli", "demo", "--wait", "--real-model", "--url", "{url}",
     "--key", "{key}"],
]  # fmt: skip
ADMIN_KEY_FILE = "admin.key"  # written into MEMAUDIT_DATA_DIR by `serve` on first start
PAGE = 50  # records page size: the demos have 48 and 80 records, so paging is exercised

ISO_TIME = re.compile(
    r"\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:Z|[+-]\d{2}:?\d{2})?"
)
HEX = re.compile(r"(?<![0-9a-fA-F])[0-9a-f]{6,32}(?![0-9a-fA-F])")  # uuid4().hex ids, shortened
API_KEY = re.compile(r"ma_[A-Za-z0-9_-]+")  # keys and their visible prefixes are random
# Scalars under these keys vary from run to run: timings, hosts, processes, code version.
VOLATILE_KEY = re.compile(
    r"second|duration|elapsed|timing|hostname|^host$|^pid$|worker|code_version|git_?sha|^commit",
    re.I,
)
SECONDS_TEXT = re.compile(r"\d[\d,]*(?:\.\d+)?\s?(?:s|ms|sec|seconds)\b")  # "3.5 s" in pages
CODE_VERSION_TEXT = re.compile(r"(Code version) \S+")
JSON_SCRIPT = re.compile(r'<script type="application/json"\s*([^>]*)>(.*?)</script>', re.S | re.I)


class Snapshot:
    def __init__(self, base: str, key: str, data_dir: Path) -> None:
        self.base, self.key, self.audit_ids = base, key, []
        self.dirs = sorted({str(data_dir), os.path.realpath(data_dir)}, key=len, reverse=True)

    # ---- HTTP ----
    def get(self, path: str, **params: Any) -> tuple[int, str]:
        query = urllib.parse.urlencode({k: v for k, v in params.items() if v is not None})
        request = urllib.request.Request(f"{self.base}{path}{'?' + query if query else ''}")
        request.add_header("Authorization", f"Bearer {self.key}")
        try:
            with urllib.request.urlopen(request, timeout=120) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    def json(self, path: str, **params: Any) -> Any:
        status, body = self.get(path, **params)
        return {"status": status, "body": json.loads(body)}

    def csv(self, path: str, **params: Any) -> dict:
        status, body = self.get(path, **params)
        rows = [[_cell(c) for c in row] for row in csv.reader(io.StringIO(body))]
        return {"status": status, "rows": rows}

    def page(self, path: str, **params: Any) -> dict:
        """An HTML page: its embedded JSON (chart figures, tables) and its visible text."""
        status, body = self.get(path, **params)
        blocks = {attrs.strip(): json.loads(raw) for attrs, raw in JSON_SCRIPT.findall(body)}
        text = re.sub(r"<(script|style)\b[^>]*>.*?</\1>", " ", body, flags=re.S | re.I)
        text = re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", text))).strip()
        text = CODE_VERSION_TEXT.sub(r"\1 <code_version>", SECONDS_TEXT.sub("<t> s", text))
        return {"status": status, "json": blocks, "text": text}

    def metrics(self) -> dict:
        status, body = self.get("/metrics")
        lines = []
        for line in body.splitlines():
            name = line.rpartition(" ")[0]
            if not line.startswith("#") and "second" in name and not name.endswith("_count"):
                line = f"{name} <volatile>"
            lines.append(line)
        return {"status": status, "lines": lines}

    # ---- normalisation ----
    def text(self, value: str) -> str:
        value = API_KEY.sub("<api-key>", value.replace(self.key, "<api-key>"))
        value = value.replace(self.base, "<base-url>")
        for data_dir in self.dirs:
            value = value.replace(data_dir, "<data-dir>")
        return ISO_TIME.sub("<datetime>", HEX.sub(self._hex, value))

    def _hex(self, match: re.Match[str]) -> str:
        """Audit ids, whole or shortened (pages show 10 or 6 characters), become audit-N in
        submission order; any other uuid hex (keys, datasets, ...) becomes <id>."""
        for n, audit_id in enumerate(self.audit_ids, 1):
            if audit_id.startswith(match[0]):
                return f"audit-{n}"
        return "<id>" if len(match[0]) == 32 else match[0]

    def norm(self, value: Any, key: str = "") -> Any:
        if isinstance(value, dict):
            return {self.text(str(k)): self.norm(v, str(k)) for k, v in value.items()}
        if isinstance(value, list):
            return [self.norm(v, key) for v in value]
        if value is not None and VOLATILE_KEY.search(key):
            return "<volatile>"
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, float):
            # 10 significant digits: identical computations print identically, but a harmless
            # change in how a float is produced (e.g. via numpy vs float) may differ in the
            # last digit of repr(); such noise must not make the snapshots differ.
            return float(f"{value:.10g}") if math.isfinite(value) else str(value)
        return value


def _cell(cell: str) -> Any:
    """CSV cells are text: numbers and JSON objects are parsed so floats round like elsewhere."""
    try:
        return json.loads(cell) if cell[:1] in "-0123456789[{" and cell else cell
    except ValueError:
        return cell


def audit_snapshot(snap: Snapshot, audit: dict) -> dict:
    aid = audit["id"]
    out: dict[str, Any] = {
        "audit": snap.json(f"/v1/audits/{aid}"),
        "callbacks": snap.json(f"/v1/audits/{aid}/callbacks"),
        "samples": {},
        "samples.csv": {"all": snap.csv(f"/v1/audits/{aid}/samples.csv")},
        "report.html": snap.page(f"/v1/audits/{aid}/report.html"),
        "dashboard": snap.page(f"/audits/{aid}"),
        "model_page": snap.page("/models", family=audit["model_family"]),
    }
    indices: set[int] = set()
    for kind in sorted({c["kind"] for c in audit["checks"]}):
        pages, offset, count = [], 0, None
        while count is None or offset < count:
            page = snap.json(f"/v1/audits/{aid}/samples", check=kind, limit=PAGE, offset=offset)
            pages.append(page)
            count = page["body"]["count"] if page["status"] == 200 else 0
            indices |= {row["sample_index"] for row in page["body"].get("data", [])}
            offset += PAGE
        ranked = snap.json(
            f"/v1/audits/{aid}/samples", check=kind, order_by="score", desc="true", limit=1000
        )
        out["samples"][kind] = {
            "pages": pages,
            "by_score_desc": [r["sample_index"] for r in ranked["body"].get("data", [])],
        }
        out["samples.csv"][kind] = snap.csv(f"/v1/audits/{aid}/samples.csv", check=kind)
    out["sample_detail"] = {
        str(i): snap.json(f"/v1/audits/{aid}/samples/{i}") for i in sorted(indices)
    }
    return out


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for(predicate: Any, what: str, timeout: float, server: subprocess.Popen) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if server.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"timed out or server exited while waiting for {what}")
        time.sleep(0.5)


def main(out_path: str) -> int:
    tmp = Path(tempfile.mkdtemp(prefix="memaudit-snapshot-"))
    data_dir, port = tmp / "data", free_port()
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMAUDIT_")}
    env.update(
        MEMAUDIT_DATA_DIR=str(data_dir),
        MEMAUDIT_LOG_FORMAT="text",
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
    )
    log = (tmp / "serve.log").open("w")
    argv = [a.format(port=port) for a in START]
    server = subprocess.Popen(argv, env=env, stdout=log, stderr=log, start_new_session=True)
    started = time.monotonic()
    try:
        key_file = data_dir / ADMIN_KEY_FILE
        wait_for(key_file.exists, "the admin key", 120, server)

        def ready() -> bool:
            try:
                with urllib.request.urlopen(f"{base}/readyz", timeout=5) as response:
                    return response.status == 200
            except OSError:
                return False

        wait_for(ready, "/readyz", 120, server)
        key = key_file.read_text().strip()
        for demo in DEMOS:
            command = [a.format(url=base, key=key) for a in demo]
            subprocess.run(command, env=env, check=True, stdout=log, stderr=log, timeout=1800)
        snap = Snapshot(base, key, data_dir)

        def listing() -> list[dict]:
            return snap.json("/v1/audits", limit=500)["body"]["data"]

        wait_for(lambda: all(a["status"] not in ("queued", "running") for a in listing()),
                 "the audits to finish", 1800, server)  # fmt: skip
        audits = sorted(listing(), key=lambda a: a["created_at"])  # submission order
        snap.audit_ids = [a["id"] for a in audits]
        result: dict[str, Any] = {
            "audits": {f"audit-{n}": audit_snapshot(snap, a) for n, a in enumerate(audits, 1)},
            "list": snap.json("/v1/audits", limit=500),
            "checks": snap.json("/v1/checks"),
            "teams": snap.json("/v1/teams"),
            "keys": snap.json("/v1/keys"),
            "policies": snap.json("/v1/policies"),
            "openapi": snap.json("/openapi.json"),
            "healthz": snap.json("/healthz"),
            "readyz": snap.json("/readyz"),
            "metrics": snap.metrics(),
            "dashboard_audits": snap.page("/audits"),
        }
        if len(audits) >= 2:
            result["compare"] = snap.page("/compare", a=audits[0]["id"], b=audits[1]["id"])
        text = json.dumps(snap.norm(result), sort_keys=True, indent=1, ensure_ascii=False)
        Path(out_path).write_text(text + "\n")
    except BaseException:
        log.flush()
        sys.stderr.write((tmp / "serve.log").read_text()[-5000:])
        raise
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)  # serve stops its worker itself
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
        log.close()
    shutil.rmtree(tmp, ignore_errors=True)
    print(f"wrote {out_path} ({len(snap.audit_ids)} audits) in {time.monotonic() - started:.0f}s")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(f"usage: {sys.argv[0]} OUT.json")
    sys.exit(main(sys.argv[1]))
