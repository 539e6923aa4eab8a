"""Where the service may send requests, and how its requests are signed.

A callback URL is a request the service makes on a user's behalf, so it must not reach the
service's own network (cloud metadata, the database, an admin port) unless an operator allows
it: the host must match the allow-list when one is set, and every address it resolves to must
be public unless private addresses are allowed. It is checked at submit time and again before
each delivery, since DNS can change in between.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
from collections.abc import Sequence
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

SIGNATURE_HEADER = "X-Memaudit-Signature"
TIMESTAMP_HEADER = "X-Memaudit-Timestamp"


class UrlNotAllowed(ValueError):
    pass


def _addresses(host: str, port: int) -> list[ipaddress.IPv4Address | ipaddress.IPv6Address]:
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise UrlNotAllowed(f"host {host!r} does not resolve ({exc.strerror})") from None
    return [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]


def check_url(url: str, allowed_hosts: Sequence[str], allow_private: bool) -> None:
    """Raise UrlNotAllowed unless the service may POST to this URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UrlNotAllowed("callback URLs must be absolute http or https URLs")
    host = parts.hostname.lower()
    if allowed_hosts and not any(fnmatchcase(host, pattern.lower()) for pattern in allowed_hosts):
        raise UrlNotAllowed(f"host {host!r} is not in MEMAUDIT_CALLBACK_ALLOWED_HOSTS")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    for address in _addresses(host, port):
        if not allow_private and not address.is_global:
            raise UrlNotAllowed(
                f"host {host!r} resolves to the non-public address {address}; set "
                "MEMAUDIT_CALLBACK_ALLOW_PRIVATE=true to allow it"
            )


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`v1=` + hex HMAC-SHA256 over `"{timestamp}.{body}"`: the timestamp is signed too, so a
    receiver that rejects old timestamps cannot be replayed with a fresh one."""
    message = str(timestamp).encode() + b"." + body
    return "v1=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(secret: str, timestamp: int, body: bytes, presented: str) -> bool:
    return hmac.compare_digest(signature(secret, timestamp, body), presented)
