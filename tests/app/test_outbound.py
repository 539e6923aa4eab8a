"""Outbound requests: which URLs the service may call, and how it signs what it sends."""

from __future__ import annotations

import pytest

from app.outbound import UrlNotAllowed, check_url, signature, verify


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
