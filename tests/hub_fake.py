"""A local FAKE of the Hugging Face Hub's HTTP API, for tests: the real Hub cannot be reached here.

It implements only what memaudit's Hub integration makes `huggingface_hub` call, in the shapes
that library parses (read from huggingface_hub 2.x: `hf_api.py`, `file_download.py`):

- reads: `GET /api/models/<org>/<name>[/revision/<rev>]` (repo info), `GET .../tree/<rev>`
  (the file listing `snapshot_download` filters), `HEAD`/`GET /<org>/<name>/resolve/<rev>/<path>`
  (with `ETag`, `X-Repo-Commit` and `Content-Length`, no Xet headers: a plain HTTP download);
- writes, bearer token required: `POST .../discussions` (and `GET` of the list and of one, which
  `create_discussion` reads back), `POST .../tag/<rev>` (409 when the tag exists), `GET .../refs`;
- webhooks: `deliver` POSTs a `repo.content` update in the Hub's v3 payload format with the
  shared secret in `X-Webhook-Secret`, as the Hub's webhook settings page configures it; a
  created tag is announced the same way, as the Hub announces a new ref.

Every file request is recorded in `fetched`, so a test can show what was never downloaded.
Repository ids must be `<org>/<name>`. Nothing here is the Hub's behaviour beyond these shapes.
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import httpx

API = re.compile(r"^/api/models/(?P<repo>[^/]+/[^/]+)(?P<rest>/.*)?$")
RESOLVE = re.compile(r"^/(?P<repo>[^/]+/[^/]+)/resolve/(?P<rev>[^/]+)/(?P<path>.+)$")


def git_blob_sha(content: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


@dataclass
class FakeRepo:
    name: str
    commit: str
    files: dict[str, bytes]
    tags: dict[str, dict[str, str]] = field(default_factory=dict)  # name: {commit, message}
    discussions: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Webhook:
    url: str
    secret: str


class FakeHub:
    """The fake Hub, served from a thread on 127.0.0.1; `with FakeHub(token) as hub: hub.url`."""

    def __init__(self, token: str) -> None:
        self.token = token
        self.repos: dict[str, FakeRepo] = {}
        self.fetched: list[str] = []  # "<repo>/<path>" of every HEAD or GET of a file
        self.refused_writes = 0  # write calls without the right bearer token
        self.webhook: Webhook | None = None
        self.deliveries: list[tuple[dict[str, Any], int]] = []  # (payload, receiver's status)
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeHub:
        self.thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()

    def push(self, repo: str, folder: Path, extra: dict[str, bytes] | None = None) -> str:
        """A commit of every file of `folder` (and `extra`) as the repository's main: its sha."""
        files = {
            p.relative_to(folder).as_posix(): p.read_bytes()
            for p in folder.rglob("*")
            if p.is_file()
        }
        files.update(extra or {})
        digest = hashlib.sha1()
        for path in sorted(files):
            digest.update(path.encode() + b"\0" + git_blob_sha(files[path]).encode())
        commit = digest.hexdigest()
        with self.lock:
            old = self.repos.get(repo)
            self.repos[repo] = FakeRepo(
                repo, commit, files, old.tags if old else {}, old.discussions if old else []
            )
        self._announce(repo, [{"ref": "refs/heads/main", "newSha": commit}])
        return commit

    def subscribe(self, url: str, secret: str) -> None:
        """The webhook a user sets up on the Hub's settings page (repo.content events)."""
        self.webhook = Webhook(url, secret)

    def _announce(self, repo: str, refs: list[dict[str, str]]) -> None:
        if self.webhook is not None:
            payload = self.payload(repo, refs)
            response = deliver(self.webhook.url, self.webhook.secret, payload)
            self.deliveries.append((payload, response.status_code))

    def payload(self, repo: str, refs: list[dict[str, str]]) -> dict[str, Any]:
        """A `repo.content` update in the Hub's webhook v3 format."""
        head = self.repos[repo].commit
        return {
            "event": {"action": "update", "scope": "repo.content"},
            "repo": {
                "type": "model",
                "name": repo,
                "id": hashlib.md5(repo.encode()).hexdigest()[:24],
                "private": False,
                "headSha": head,
                "owner": {"id": "owner"},
                "url": {"web": f"{self.url}/{repo}", "api": f"{self.url}/api/models/{repo}"},
            },
            "updatedRefs": refs,
            "webhook": {"id": "fake-webhook", "version": 3},
        }


def deliver(url: str, secret: str, payload: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        url,
        content=json.dumps(payload),
        headers={"X-Webhook-Secret": secret, "Content-Type": "application/json"},
        timeout=30,
    )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.000Z")


def _handler(hub: FakeHub) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: object) -> None:  # quiet
            pass

        # -- plumbing ------------------------------------------------------------------------
        def _send(
            self,
            status: int,
            body: bytes = b"",
            headers: dict[str, str] | None = None,
            head: bool = False,
        ) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if not head:
                self.wfile.write(body)

        def _json(self, status: int, value: Any) -> None:
            self._send(status, json.dumps(value).encode(), {"Content-Type": "application/json"})

        def _error(self, status: int, code: str, message: str, head: bool = False) -> None:
            body = json.dumps({"error": message}).encode()
            headers = {"Content-Type": "application/json", "X-Error-Code": code}
            self._send(status, body, headers, head=head)

        def _body(self) -> dict[str, Any]:
            length = int(self.headers.get("Content-Length") or 0)
            return json.loads(self.rfile.read(length) or b"{}")

        def _authorized(self) -> bool:
            if self.headers.get("Authorization") == f"Bearer {hub.token}":
                return True
            hub.refused_writes += 1
            self._error(401, "Unauthorized", "Invalid credentials in Authorization header")
            return False

        def _repo(self, name: str, head: bool = False) -> FakeRepo | None:
            repo = hub.repos.get(name)
            if repo is None:
                self._error(404, "RepoNotFound", f"Repository {name} not found", head=head)
            return repo

        def _revision(self, repo: FakeRepo, rev: str, head: bool = False) -> bool:
            rev = unquote(rev)
            known = {repo.commit, "main", *(t for t in repo.tags)}
            if rev not in known:
                self._error(404, "RevisionNotFound", f"Invalid rev id: {rev}", head=head)
                return False
            return True

        # -- routes --------------------------------------------------------------------------
        def do_HEAD(self) -> None:
            self._resolve(head=True)

        def do_GET(self) -> None:
            path = urlsplit(self.path).path
            if RESOLVE.match(path):
                self._resolve(head=False)
                return
            match = API.match(path)
            if not match:
                self._error(404, "EntryNotFound", f"no route {path}")
                return
            repo = self._repo(match["repo"])
            if repo is None:
                return
            rest = match["rest"] or ""
            if rest == "" or rest.startswith("/revision/"):
                if rest and not self._revision(repo, rest.split("/", 2)[2]):
                    return
                self._json(200, self._info(repo))
            elif rest.startswith("/tree/"):
                if self._revision(repo, rest.split("/", 2)[2]):
                    self._json(200, self._tree(repo))
            elif rest == "/refs":
                self._json(200, self._refs(repo))
            elif rest == "/discussions":
                with hub.lock:
                    listed = [self._discussion(repo, d) for d in reversed(repo.discussions)]
                self._json(200, {"discussions": listed, "count": len(listed), "start": 0})
            elif re.fullmatch(r"/discussions/\d+", rest):
                num = int(rest.rsplit("/", 1)[1])
                found = [d for d in repo.discussions if d["num"] == num]
                if not found:
                    self._error(404, "EntryNotFound", f"discussion {num} not found")
                    return
                self._json(200, self._details(repo, found[0]))
            else:
                self._error(404, "EntryNotFound", f"no route {path}")

        def do_POST(self) -> None:
            path = urlsplit(self.path).path
            match = API.match(path)
            if not match:
                self._error(404, "EntryNotFound", f"no route {path}")
                return
            if not self._authorized():
                return
            repo = self._repo(match["repo"])
            if repo is None:
                return
            rest, body = match["rest"] or "", self._body()
            if rest == "/discussions":
                with hub.lock:
                    num = len(repo.discussions) + 1
                    repo.discussions.append(
                        {
                            "num": num,
                            "title": body["title"],
                            "description": body.get("description", ""),
                            "createdAt": _now(),
                        }
                    )
                self._json(200, {"num": num})
            elif rest.startswith("/tag/"):
                rev = unquote(rest.split("/", 2)[2])
                if not self._revision(repo, rev):
                    return
                tag = body["tag"]
                with hub.lock:
                    if tag in repo.tags:
                        self._error(409, "Conflict", f"tag {tag} already exists")
                        return
                    commit = repo.commit if rev in ("main", repo.commit) else rev
                    repo.tags[tag] = {"commit": commit, "message": body.get("message", "")}
                self._json(200, {})
                hub._announce(repo.name, [{"ref": f"refs/tags/{tag}", "newSha": commit}])
            else:
                self._error(404, "EntryNotFound", f"no route {path}")

        # -- shapes --------------------------------------------------------------------------
        def _resolve(self, head: bool) -> None:
            match = RESOLVE.match(urlsplit(self.path).path)
            if not match:
                self._error(404, "EntryNotFound", "no route", head=head)
                return
            repo = self._repo(match["repo"], head=head)
            if repo is None or not self._revision(repo, match["rev"], head=head):
                return
            path = unquote(match["path"])
            hub.fetched.append(f"{repo.name}/{path}")
            content = repo.files.get(path)
            if content is None:
                self._error(404, "EntryNotFound", f"{path} does not exist", head=head)
                return
            headers = {
                "ETag": f'"{git_blob_sha(content)}"',
                "X-Repo-Commit": repo.commit,
                "Content-Type": "application/octet-stream",
            }
            self._send(200, content, headers, head=head)

        def _info(self, repo: FakeRepo) -> dict[str, Any]:
            return {
                "_id": repo.name,
                "id": repo.name,
                "modelId": repo.name,
                "sha": repo.commit,
                "private": False,
                "disabled": False,
                "gated": False,
                "tags": [],
                "siblings": [{"rfilename": path} for path in sorted(repo.files)],
            }

        def _tree(self, repo: FakeRepo) -> list[dict[str, Any]]:
            return [
                {"type": "file", "oid": git_blob_sha(content), "size": len(content), "path": path}
                for path, content in sorted(repo.files.items())
            ]

        def _refs(self, repo: FakeRepo) -> dict[str, Any]:
            branch = {"name": "main", "ref": "refs/heads/main", "targetCommit": repo.commit}
            tags = [
                {"name": name, "ref": f"refs/tags/{name}", "targetCommit": tag["commit"]}
                for name, tag in sorted(repo.tags.items())
            ]
            return {"branches": [branch], "tags": tags, "converts": []}

        def _discussion(self, repo: FakeRepo, item: dict[str, Any]) -> dict[str, Any]:
            return {
                "num": item["num"],
                "title": item["title"],
                "status": "open",
                "createdAt": item["createdAt"],
                "isPullRequest": False,
                "author": {"name": "memaudit-bot"},
                "repo": {"name": repo.name, "type": "model"},
            }

        def _details(self, repo: FakeRepo, item: dict[str, Any]) -> dict[str, Any]:
            comment = {
                "id": f"c{item['num']}",
                "type": "comment",
                "createdAt": item["createdAt"],
                "author": {"name": "memaudit-bot"},
                "data": {"edited": False, "hidden": False, "latest": {"raw": item["description"]}},
            }
            return {**self._discussion(repo, item), "events": [comment]}

    return Handler
