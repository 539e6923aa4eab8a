"""Failed keys and sign-ins are throttled per client, across API processes, behind proxies."""

from __future__ import annotations

import pytest
from starlette.datastructures import Headers

from app.main import create_app
from app.throttle import client_address
from core.config import trusted_networks
from tests.flows import sign_in

BAD = {"Authorization": "Bearer ma_not-a-key"}


def test_repeated_bad_keys_get_429_with_retry_after(make_stack) -> None:
    stack = make_stack(auth_failure_limit=5, auth_failure_window_seconds=600)
    codes = [stack.client.get("/v1/audits", headers=BAD).status_code for _ in range(7)]
    assert codes == [401] * 4 + [429] * 3
    throttled = stack.client.get("/v1/audits", headers=BAD)
    assert throttled.json()["error"]["code"] == "too_many_failures"
    assert 0 < int(throttled.headers["Retry-After"]) <= 600
    # A valid key from the same client is never locked out by someone else's failures.
    assert stack.client.get("/v1/audits", headers=stack.headers).status_code == 200
    # A second API process over the same database sees the same count.
    from fastapi.testclient import TestClient

    other = TestClient(create_app(stack.settings))
    assert other.get("/v1/audits", headers=BAD).status_code == 429
    other.app.state.db.dispose()


def test_sign_in_is_throttled_per_client(make_stack) -> None:
    stack = make_stack(auth_failure_limit=3)
    failed = [sign_in(stack.client, "ma_wrong") for _ in range(4)]
    assert [r.status_code for r in failed] == [401, 401, 429, 429]
    assert "Retry-After" in failed[-1].headers and "try again in" in failed[-1].text
    assert sign_in(stack.client, stack.headers["Authorization"].split()[1]).status_code == 303


def test_a_proxy_line_after_the_clients_own_is_the_one_believed(make_stack) -> None:
    """Some proxies add their own X-Forwarded-For line after the client's: every line counts,
    in order, so a client cannot name itself (nor a victim) in a line of its own."""
    from app.deps import request_client

    class Request:
        client = type("Peer", (), {"host": "10.0.0.2"})()
        headers = Headers(
            raw=[(b"x-forwarded-for", b"6.6.6.6"), (b"x-forwarded-for", b"198.51.100.1")]
        )

    stack = make_stack(trusted_proxies="10.0.0.0/8")
    assert request_client(Request(), stack.settings) == "198.51.100.1"


def test_forwarded_addresses_count_only_behind_a_trusted_proxy(make_stack) -> None:
    stack = make_stack(auth_failure_limit=2, trusted_proxies="127.0.0.1")
    # The test client's peer is "testclient", not an address: not trusted, so a spoofed
    # header changes nothing, and every attempt counts against the peer.
    for spoofed in ["1.1.1.1", "2.2.2.2"]:
        stack.client.get("/v1/audits", headers={**BAD, "X-Forwarded-For": spoofed})
    assert stack.client.get("/v1/audits", headers=BAD).status_code == 429


@pytest.mark.parametrize(
    ("peer", "forwarded", "expected"),
    [
        ("203.0.113.9", "198.51.100.1", "203.0.113.9"),  # not a proxy: the header is ignored
        ("10.0.0.2", "198.51.100.1", "198.51.100.1"),
        ("10.0.0.2", "6.6.6.6, 198.51.100.1", "198.51.100.1"),  # the client's own claim ignored
        ("10.0.0.2", "198.51.100.1, 10.0.0.3", "198.51.100.1"),  # two proxies in a row
        ("10.0.0.2", "", "10.0.0.2"),
    ],
)
def test_the_client_is_the_rightmost_address_no_trusted_proxy_added(
    peer, forwarded, expected
) -> None:
    assert client_address(peer, forwarded, trusted_networks("10.0.0.0/8")) == expected
