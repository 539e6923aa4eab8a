"""Outbound requests: which URLs the service may call, and how it signs what it sends."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from core.outbound import (
    UrlNotAllowed,
    check_url,
    checked_addresses,
    checked_client,
    signature,
    verify,
)


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9000/hook",
        "http://localhost/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",  # cloud metadata
        "http://[::1]/hook",
        "http://192.168.0.10/hook",
    ],
)
def test_private_addresses_are_refused_unless_allowed(url: str) -> None:
    with pytest.raises(UrlNotAllowed, match="non-public address"):
        check_url(url, [], allow_private=False)
    check_url(url, [], allow_private=True)


def test_a_refusal_names_the_opt_in_that_governs_the_request() -> None:
    """Callbacks, the SMTP relay and the identity provider each have their own opt-in; the
    refusal must send the operator to the right one (the provider's: tests/app/oidc)."""
    with pytest.raises(UrlNotAllowed, match="set MEMAUDIT_CALLBACK_ALLOW_PRIVATE=true"):
        check_url("http://127.0.0.1/hook", [], allow_private=False)
    with pytest.raises(UrlNotAllowed, match="set MEMAUDIT_SMTP_ALLOW_PRIVATE=true") as refused:
        checked_addresses(
            "127.0.0.1", 25, [], False, "MEMAUDIT_SMTP_HOST",
            private_setting="MEMAUDIT_SMTP_ALLOW_PRIVATE",
        )  # fmt: skip
    assert "CALLBACK" not in str(refused.value)


def test_public_addresses_pass_and_the_allow_list_is_enforced() -> None:
    check_url("https://8.8.8.8/hook", [], allow_private=False)
    check_url("https://8.8.8.8/hook", ["8.8.*"], allow_private=False)
    with pytest.raises(UrlNotAllowed, match="not in MEMAUDIT_CALLBACK_ALLOWED_HOSTS"):
        check_url("https://8.8.8.8/hook", ["hooks.example.com"], allow_private=False)


@pytest.mark.parametrize(
    "url", ["ftp://example.com/x", "file:///etc/passwd", "/relative", "http://"]
)
def test_only_absolute_http_urls(url: str) -> None:
    with pytest.raises(UrlNotAllowed):
        check_url(url, [], allow_private=True)


def test_the_signature_covers_timestamp_and_body() -> None:
    body = b'{"audit_id":"a"}'
    signed = signature("s3cret", 1700000000, body)
    assert signed.startswith("v1=") and len(signed) == 3 + 64
    assert verify("s3cret", 1700000000, body, signed)
    assert not verify("s3cret", 1700000001, body, signed)
    assert not verify("s3cret", 1700000000, body + b" ", signed)
    assert not verify("other", 1700000000, body, signed)


@pytest.mark.parametrize(
    ("address", "carried"),
    [
        ("::ffff:10.0.0.1", "10.0.0.1"),  # IPv4-mapped
        ("::ffff:0:7f00:1", "127.0.0.1"),  # SIIT IPv4-translated
        ("::a9fe:a9fe", "169.254.169.254"),  # IPv4-compatible
        ("64:ff9b::a9fe:a9fe", "169.254.169.254"),  # NAT64 well-known prefix
        ("64:ff9b:1::a00:1", "local-use"),  # NAT64 local-use prefix
        ("2002:7f00:1::1", "127.0.0.1"),  # 6to4
        ("2001:0:808:808:0:f227:f5ff:fffe", "10.0.0.1"),  # Teredo: the client, XOR-ed
        ("2001:0:a00:1:0:f227:f7f7:f7f7", "10.0.0.1"),  # Teredo: the server
    ],
)
def test_ipv6_forms_that_carry_a_private_ipv4_are_refused(address: str, carried: str) -> None:
    with pytest.raises(UrlNotAllowed, match=r"non-public|local-use"):
        check_url(f"http://[{address}]/hook", [], allow_private=False)
    check_url(f"http://[{address}]/hook", [], allow_private=True)


def test_ipv6_forms_that_carry_a_public_ipv4_pass() -> None:
    for address in ["64:ff9b::808:808", "2002:808:808::1", "2606:4700:4700::1111"]:
        check_url(f"http://[{address}]/hook", [], allow_private=False)


def test_teredo_yields_server_and_unmasked_client() -> None:
    import ipaddress

    from core.outbound import embedded_ipv4

    carried = embedded_ipv4(ipaddress.IPv6Address("2001:0:808:808:0:f227:f5ff:fffe"))
    assert [str(a) for a in carried] == ["8.8.8.8", "10.0.0.1"]


@contextmanager
def _http_server(routes: dict[str, tuple[int, dict[str, str]]]) -> Iterator[tuple[str, list]]:
    """A local HTTP server answering each path with (status, headers); records the hits."""
    hits: list[tuple[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            hits.append((self.path, self.headers.get("host", "")))
            status, headers = routes.get(self.path, (404, {}))
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("content-length", "0")
            self.end_headers()

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.server_address[1]}", hits
    finally:
        server.shutdown()


def test_every_redirect_hop_is_judged() -> None:
    routes: dict[str, tuple[int, dict[str, str]]] = {"/ok": (204, {})}
    with _http_server(routes) as (origin, hits):
        port = origin.split(":")[1]
        routes["/hop"] = (307, {"location": f"http://127.0.0.1:{port}/ok"})
        routes["/out"] = (307, {"location": f"http://localhost:{port}/ok"})
        allowed = checked_client(
            ["127.0.0.1"], True, setting="MEMAUDIT_CALLBACK_ALLOWED_HOSTS", private_setting="x",
            timeout=5, follow_redirects=True,
        )  # fmt: skip
        with allowed:
            assert allowed.post(f"http://{origin}/hop", content=b"{}").status_code == 204
            with pytest.raises(UrlNotAllowed, match="'localhost' is not in"):
                allowed.post(f"http://{origin}/out", content=b"{}")
        assert [path for path, _ in hits] == ["/hop", "/ok", "/out"]
        public_only = checked_client(
            [], False, setting="x", private_setting="x", timeout=5, follow_redirects=True
        )
        with public_only, pytest.raises(UrlNotAllowed, match="non-public"):
            public_only.post(f"http://{origin}/hop", content=b"{}")


def test_the_connection_goes_to_the_address_that_was_checked(monkeypatch) -> None:
    """A name that answers 127.0.0.1 when checked and then something else (DNS rebinding):
    the request reaches the checked address, and the name is looked up once."""
    real = socket.getaddrinfo
    lookups = []

    def rebinding(host, port, *args, **kwargs):
        if host == "rebind.test":
            lookups.append(host)
            address = "127.0.0.1" if len(lookups) == 1 else "10.255.255.1"
            return real(address, port, *args, **kwargs)
        return real(host, port, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    with _http_server({"/ok": (204, {})}) as (origin, hits):
        port = origin.split(":")[1]
        client = checked_client(["rebind.test"], True, setting="x", private_setting="x", timeout=5)
        with client:
            assert client.post(f"http://rebind.test:{port}/ok", content=b"{}").status_code == 204
    assert lookups == ["rebind.test"]
    assert hits == [("/ok", f"rebind.test:{port}")]  # the name kept for the Host header


@pytest.mark.parametrize("address", ["fec0::1", "ff0e::1", "ff02::1"])
def test_site_local_and_multicast_are_not_public(address: str) -> None:
    with pytest.raises(UrlNotAllowed, match="non-public"):
        check_url(f"http://[{address}]/hook", [], allow_private=False)
