"""Where the service may send requests, and how its requests are signed.

A callback URL is a request the service makes on a user's behalf, so it must not reach the
service's own network (cloud metadata, the database, an admin port) unless an operator allows
it: the host must match the allow-list when one is set, and every address it resolves to must
be public unless private addresses are allowed. An IPv6 address that carries an IPv4 one
(mapped, compatible, NAT64, 6to4, SIIT, Teredo's server and client) is judged by each address
it carries as well. Every request, every redirect hop included, is checked as it is sent, and
the connection goes to the very address that was checked: no second DNS lookup, so a name that
rebinds between the check and the connection cannot swap in another address.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import socket
from collections.abc import Sequence
from fnmatch import fnmatchcase
from typing import Any
from urllib.parse import urlsplit

import httpx

SIGNATURE_HEADER = "X-Memaudit-Signature"
TIMESTAMP_HEADER = "X-Memaudit-Timestamp"
MAX_REDIRECTS = 5
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

NAT64_WELL_KNOWN = ipaddress.ip_network("64:ff9b::/96")
NAT64_LOCAL_USE = ipaddress.ip_network("64:ff9b:1::/48")  # RFC 8215: never global
SIIT_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")  # RFC 2765 IPv4-translated
COMPATIBLE = ipaddress.ip_network("::/96")  # RFC 4291 IPv4-compatible (deprecated)


class UrlNotAllowed(ValueError):
    pass


def embedded_ipv4(address: ipaddress.IPv6Address) -> list[ipaddress.IPv4Address]:
    """Every IPv4 address an IPv6 address carries: a request to it may reach those."""
    found = []
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.ipv4_mapped is not None:
        found.append(address.ipv4_mapped)
    if address in NAT64_WELL_KNOWN or address in SIIT_TRANSLATED:
        found.append(low32)
    if address in COMPATIBLE and int(address) > 1:  # not :: or ::1
        found.append(low32)
    if address.sixtofour is not None:
        found.append(address.sixtofour)
    if address.teredo is not None:
        found.extend(address.teredo)  # (server, client), the client's bits un-XOR-ed
    return found


def refusal(address: Address) -> str | None:
    """Why a request may not go to this address without the private-address opt-in."""
    # Python counts deprecated site-local (fec0::/10) and multicast addresses as global.
    if not address.is_global or address.is_multicast or getattr(address, "is_site_local", False):
        return f"the non-public address {address}"
    if isinstance(address, ipaddress.IPv6Address):
        if address in NAT64_LOCAL_USE:
            return f"the local-use NAT64 address {address}"
        for carried in embedded_ipv4(address):
            if not carried.is_global:
                return f"{address}, which carries the non-public address {carried}"
    return None


def _parse(raw: str) -> Address:
    return ipaddress.ip_address(raw.split("%")[0])


CALLBACK_HOSTS_SETTING = "MEMAUDIT_CALLBACK_ALLOWED_HOSTS"
CALLBACK_PRIVATE_SETTING = "MEMAUDIT_CALLBACK_ALLOW_PRIVATE"


def checked_addresses(
    host: str,
    port: int,
    allowed_hosts: Sequence[str],
    allow_private: bool,
    setting: str,
    *,
    private_setting: str,
) -> list[Address]:
    """The host's addresses, each judged; UrlNotAllowed if the host or any address is refused.
    `setting` and `private_setting` name the host list and the private-address opt-in that
    govern this request (callbacks, the SMTP relay and the identity provider each have their
    own), so a refusal tells the operator which one to change."""
    host = host.lower().strip("[]")
    if allowed_hosts and not any(fnmatchcase(host, pattern.lower()) for pattern in allowed_hosts):
        raise UrlNotAllowed(f"host {host!r} is not in {setting}")
    try:
        infos = socket.getaddrinfo(host, port, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        raise UrlNotAllowed(f"host {host!r} does not resolve ({exc.strerror})") from None
    addresses = list(dict.fromkeys(_parse(info[4][0]) for info in infos))
    if not allow_private:
        for address in addresses:
            reason = refusal(address)
            if reason:
                raise UrlNotAllowed(
                    f"host {host!r} resolves to {reason}; set {private_setting}=true to allow it"
                )
    return addresses


def _port(parts: Any) -> int:
    return parts.port or (443 if parts.scheme == "https" else 80)


def check_url(url: str, allowed_hosts: Sequence[str], allow_private: bool) -> None:
    """Raise UrlNotAllowed unless the service may POST to this URL (checked at submit; each
    request is checked again as it is sent). A user's URL (a callback, a webhook channel):
    the callback rules, and a refusal names their settings."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UrlNotAllowed("callback URLs must be absolute http or https URLs")
    checked_addresses(
        parts.hostname,
        _port(parts),
        allowed_hosts,
        allow_private,
        CALLBACK_HOSTS_SETTING,
        private_setting=CALLBACK_PRIVATE_SETTING,
    )


class CheckedTransport(httpx.HTTPTransport):
    """Resolves each request's host once, judges every address, and connects to the first
    one judged, keeping the name for the Host header and TLS (SNI and the certificate)."""

    def __init__(
        self,
        allowed_hosts: Sequence[str],
        allow_private: bool,
        setting: str,
        private_setting: str,
        **options: Any,
    ) -> None:
        super().__init__(**options)
        self.allowed_hosts, self.allow_private = allowed_hosts, allow_private
        self.setting, self.private_setting = setting, private_setting

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https") or not url.host:
            raise UrlNotAllowed(f"{url} is not an absolute http or https URL")
        port = url.port or (443 if url.scheme == "https" else 80)
        address = checked_addresses(
            url.host,
            port,
            self.allowed_hosts,
            self.allow_private,
            self.setting,
            private_setting=self.private_setting,
        )[0]
        if url.scheme == "https":
            request.extensions = {**request.extensions, "sni_hostname": url.host}
        # The Host header was set from the name when the request was built; only the
        # connection target changes, and the name comes back for whatever follows (a
        # redirect is resolved against it, and checked again on its way out).
        request.url = url.copy_with(host=str(address))
        try:
            return super().handle_request(request)
        finally:
            request.url = url


def checked_client(
    allowed_hosts: Sequence[str],
    allow_private: bool,
    *,
    setting: str,
    private_setting: str,
    timeout: float,
    follow_redirects: bool = False,
    headers: dict[str, str] | None = None,
) -> httpx.Client:
    """An HTTP client whose every request (redirects included) goes through the checks;
    proxies from the environment are ignored (a proxy would resolve the name again)."""
    return httpx.Client(
        transport=CheckedTransport(allowed_hosts, allow_private, setting, private_setting),
        timeout=timeout,
        follow_redirects=follow_redirects,
        max_redirects=MAX_REDIRECTS,
        headers=headers,
        trust_env=False,
    )


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """`v1=` + hex HMAC-SHA256 over `"{timestamp}.{body}"`: the timestamp is signed too, so a
    receiver that rejects old timestamps cannot be replayed with a fresh one."""
    message = str(timestamp).encode() + b"." + body
    return "v1=" + hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def verify(secret: str, timestamp: int, body: bytes, presented: str) -> bool:
    return hmac.compare_digest(signature(secret, timestamp, body), presented)
