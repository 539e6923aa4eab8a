"""OpenAI-compatible endpoint URIs, the host allow-list, and the client's failure handling."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import pytest

from core.inspection.chat_endpoints import (
    MAX_WAIT_SECONDS,
    EndpointChat,
    EndpointUnavailable,
    parse_uri,
    retry_after_seconds,
)
from core.inspection.errors import ModelError
from tests.worker.checks.reasoning.wilt_agents import stub_chat_server


def test_uris_and_the_allow_list() -> None:
    endpoint = parse_uri("openai:gpt-4o-mini@https://API.example.com/v1", ["*.example.com"])
    assert (endpoint.model, endpoint.completions_url) == (
        "gpt-4o-mini",
        "https://API.example.com/v1/chat/completions",
    )
    for uri, allowed, message in [
        ("openai:gpt@https://api.example.com/v1", [], "none are allowed"),
        ("openai:gpt@https://evil.test/v1", ["*.example.com"], "not in MEMAUDIT_CHAT"),
        ("openai:https://api.example.com/v1", ["*"], "openai:<model>@<base URL>"),
        ("openai:gpt@ftp://api.example.com", ["*"], "openai:<model>@<base URL>"),
        ("path:/models/x", ["*"], "not a chat endpoint"),
        ("openai:gpt@http://api.example.com:9000/admin", ["https://api.example.com/v1"], "not in"),
        ("openai:gpt@https://api.example.com/v2", ["https://api.example.com/v1"], "not in"),
    ]:
        with pytest.raises(ModelError, match=message):
            parse_uri(uri, allowed)


def test_a_base_url_pattern_pins_scheme_port_and_path() -> None:
    allowed = ["https://api.example.com/v1", "http://vllm.internal:8000/*"]
    assert parse_uri("openai:gpt@https://api.example.com/v1/", allowed).model == "gpt"
    assert parse_uri("openai:m@http://vllm.internal:8000/v1", allowed).model == "m"


def test_a_refusal_is_permanent_and_an_outage_is_transient() -> None:
    waits: list[float] = []
    with stub_chat_server("right-key", fail_first=2) as server:
        endpoint = parse_uri(f"openai:prober@{server.url}", ["127.0.0.1"])
        chat = EndpointChat(endpoint, "right-key", timeout=10, sleep=waits.append)
        # Two 503s, then an answer: retried within one call.
        (reply,) = chat([[{"role": "user", "content": "Begin."}]], 64)
        assert "Test Case:" in reply and len(server.requests) == 3
        assert server.requests[-1]["max_tokens"] == 64
        with pytest.raises(ModelError, match="HTTP 401"):
            EndpointChat(endpoint, "wrong-key", timeout=10).reply([], 8)
        unknown = parse_uri(f"openai:nobody@{server.url}", ["127.0.0.1"])
        with pytest.raises(ModelError, match="HTTP 404"):
            EndpointChat(unknown, "right-key", timeout=10).reply([], 8)
        server.fail_first = 10
        with pytest.raises(EndpointUnavailable, match="failed 4 times: HTTP 503"):
            chat.reply([], 8)
    # Exponential with full jitter: 2 waits, then 3, each below its doubling bound.
    assert len(waits) == 5
    for wait, bound in zip(waits, [2, 4, 2, 4, 8], strict=True):
        assert 0 <= wait <= bound


def test_the_backoff_is_jittered() -> None:
    waits: list[float] = []
    with stub_chat_server("k", fail_first=40) as server:
        chat = EndpointChat(
            parse_uri(f"openai:prober@{server.url}", ["127.0.0.1"]),
            "k",
            timeout=10,
            sleep=waits.append,
        )
        for _ in range(10):
            with pytest.raises(EndpointUnavailable):
                chat.reply([], 8)
    firsts = waits[::3]
    assert len(set(firsts)) == len(firsts)  # clients failing together do not retry together
    assert max(firsts) <= 2


def test_a_rate_limit_is_waited_out_as_long_as_the_server_asks() -> None:
    waits: list[float] = []
    with stub_chat_server("k", fail_first=1) as server:
        server.fail_status, server.retry_after = 429, "7"
        chat = EndpointChat(
            parse_uri(f"openai:prober@{server.url}", ["127.0.0.1"]),
            "k",
            timeout=10,
            sleep=waits.append,
        )
        (reply,) = chat([[{"role": "user", "content": "Begin."}]], 64)
        assert "Test Case:" in reply and len(server.requests) == 2
        assert waits == [7.0]  # longer than the first backoff (at most 2 s): the server's wait

        in_20_s = datetime.now(UTC) + timedelta(seconds=20)
        server.fail_first, server.retry_after = 1, format_datetime(in_20_s, usegmt=True)
        chat.reply([], 8)
        assert 17 <= waits[-1] <= 20  # an HTTP date (whole seconds, and the request took time)

        server.fail_first, server.retry_after = 1, "86400"
        chat.reply([], 8)
        assert waits[-1] == MAX_WAIT_SECONDS  # capped: a day's wait is the shard's to take


def test_retry_after_reads_seconds_and_http_dates() -> None:
    now = datetime(2026, 12, 5, 12, 0, 0, tzinfo=UTC)
    assert retry_after_seconds("120", now) == 120.0
    assert retry_after_seconds(" 0 ", now) == 0.0
    assert retry_after_seconds("Sat, 05 Dec 2026 12:01:30 GMT", now) == 90.0
    assert retry_after_seconds("Saturday, 05-Dec-26 12:00:10 GMT", now) == 10.0  # RFC 850
    assert retry_after_seconds("Sat Dec  5 12:00:05 2026", now) == 5.0  # asctime
    assert retry_after_seconds("Sat, 05 Dec 2026 11:00:00 GMT", now) == 0.0  # already past
    for unreadable in (None, "", "soon", "-5", "1.5"):
        assert retry_after_seconds(unreadable, now) is None
