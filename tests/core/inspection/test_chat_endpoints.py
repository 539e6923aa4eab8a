"""OpenAI-compatible endpoint URIs, the host allow-list, and the client's failure handling."""

from __future__ import annotations

import pytest

from core.inspection.chat_endpoints import EndpointChat, EndpointUnavailable, parse_uri
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


def test_a_refusal_is_permanent_and_an_outage_is_transient(monkeypatch) -> None:
    monkeypatch.setattr("core.inspection.chat_endpoints.time.sleep", lambda _s: None)
    with stub_chat_server("right-key", fail_first=2) as server:
        endpoint = parse_uri(f"openai:prober@{server.url}", ["127.0.0.1"])
        chat = EndpointChat(endpoint, "right-key", timeout=10)
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
        with pytest.raises(EndpointUnavailable, match="failed 4 times"):
            chat.reply([], 8)
