"""Scripted WILT players and a local OpenAI-compatible server that speaks for them.

`Prober` keeps a library of candidate rules, drops those the observed results contradict, and
asks the test that splits the survivors most evenly: a player that "probes well". `Sloppy`
never wraps its action in backticks, so the harness re-prompts once and then aborts.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import product

from worker.engine.wilt_guess import parse_guess
from worker.engine.wilt_rules import rule_set

RESULT = re.compile(r"Result for \(([^)]*)\): (True|False)")
POOL = [*product(range(-3, 4), repeat=3), (0.5, 1.5, 2.5), (1.5, 0.5, 2.25), (0.25, 0.5, 0.75)]


def _observations(messages: Sequence[dict[str, str]]) -> list[tuple[tuple[float, ...], bool]]:
    seen = []
    for message in messages:
        if message["role"] == "user":
            for values, outcome in RESULT.findall(message["content"]):
                point = tuple(float(v) for v in values.split(","))
                seen.append((point, outcome == "True"))
    return seen


def _holds(text: str, point: Sequence[float]) -> bool:
    try:
        return bool(parse_guess(text)(*point))
    except (ArithmeticError, ValueError, TypeError):
        return False


@dataclass
class Prober:
    library: list[str] = field(default_factory=lambda: [r.text for r in rule_set("full")])

    def __post_init__(self) -> None:
        self._table = {text: [_holds(text, p) for p in POOL] for text in self.library}

    def reply(self, messages: Sequence[dict[str, str]]) -> str:
        seen = _observations(messages)
        alive = [h for h in self.library if all(_holds(h, p) == out for p, out in seen)]
        asked = {p for p, _ in seen}
        left = 30 - len(seen)
        splits = []
        for i, point in enumerate(POOL):
            if tuple(float(v) for v in point) in asked:
                continue
            yes = sum(self._table[h][i] for h in alive)
            splits.append((abs(2 * yes - len(alive)), i))
        best = min(splits) if splits else None
        if not alive:
            return "Nothing I know fits. Final Guess: ```lambda x, y, z: False```"
        if left == 0 or best is None or best[0] == len(alive):  # no test tells them apart
            return f"Only one rule fits what I saw. Final Guess: ```{alive[0]}```"
        x, y, z = POOL[best[1]]
        return f"{len(alive)} rules still fit; this splits them.\nTest Case: ```({x}, {y}, {z})```"


class Sloppy:
    def reply(self, messages: Sequence[dict[str, str]]) -> str:
        return "I think the rule is about order. Test Case: (1, 2, 3)"


PLAYERS = {"prober": Prober, "sloppy": Sloppy}


@dataclass
class StubServer:
    url: str
    api_key: str
    requests: list[dict] = field(default_factory=list)
    fail_first: int = 0  # answer this many requests with `fail_status` first
    fail_status: int = 503  # what the failing answers are (429: a rate limit)
    retry_after: str | None = None  # the failing answers' Retry-After header, if any


@contextmanager
def stub_chat_server(api_key: str, fail_first: int = 0) -> Iterator[StubServer]:
    """/v1/chat/completions on 127.0.0.1, the `model` field choosing the player."""
    players = {name: make() for name, make in PLAYERS.items()}
    lock = threading.Lock()
    state = StubServer("", api_key, fail_first=fail_first)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *_args) -> None:
            return

        def _send(self, status: int, body: dict, headers: dict[str, str] | None = None) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with lock:
                state.requests.append(body)
                failing = state.fail_first > 0
                state.fail_first -= 1
            if self.path != "/v1/chat/completions":
                return self._send(404, {"error": "not found"})
            if self.headers.get("Authorization") != f"Bearer {api_key}":
                return self._send(401, {"error": {"message": "bad key"}})
            if failing:
                waits = {"Retry-After": state.retry_after} if state.retry_after else {}
                return self._send(state.fail_status, {"error": {"message": "not now"}}, waits)
            player = players.get(body["model"])
            if player is None:
                return self._send(404, {"error": {"message": f"no model {body['model']}"}})
            content = player.reply(body["messages"])
            self._send(200, {"choices": [{"message": {"role": "assistant", "content": content}}]})

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}/v1"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
