"""Notification e-mail through the operator's SMTP relay (MEMAUDIT_SMTP_*).

The relay's host is held to the outbound address rules before every connection (resolved once,
each address judged, private ones refused unless SMTP_ALLOW_PRIVATE, the relay's own opt-in: an
internal relay must not open every team's webhooks to private addresses), and the connection
goes to the very address that was checked, with the name kept for TLS. The answer is classified
like an HTTP one: SMTP's 4xx replies and network errors are worth another attempt, 5xx replies
(a refused recipient, a refused login) and a refused host are not.
"""

from __future__ import annotations

import smtplib
import socket
import ssl
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import make_msgid

from core.config import Settings
from core.notifications import mail_configured, recipients_outside
from core.outbound import UrlNotAllowed, checked_addresses
from worker.delivery import MAX_ERROR_CHARS, Response

OK = 250


def _connect_to(address: str, port: int, timeout: float, source: tuple | None) -> socket.socket:
    return socket.create_connection((address, port), timeout, source)


class _CheckedSMTP(smtplib.SMTP):
    """Connects to the checked address; `_host` (the name) stays what STARTTLS verifies."""

    def __init__(self, address: str, **options: object) -> None:
        self.checked_address = address
        super().__init__(**options)  # type: ignore[arg-type]

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        return _connect_to(self.checked_address, port, timeout, self.source_address)


class _CheckedSMTPSSL(smtplib.SMTP_SSL):
    def __init__(self, address: str, **options: object) -> None:
        self.checked_address = address
        super().__init__(**options)  # type: ignore[arg-type]

    def _get_socket(self, host: str, port: int, timeout: float) -> socket.socket:
        plain = _connect_to(self.checked_address, port, timeout, self.source_address)
        return self.context.wrap_socket(plain, server_hostname=self._host)


def envelope(
    settings: Settings, recipients: Sequence[str], subject: str, text: str
) -> EmailMessage:
    message = EmailMessage()
    message["From"] = settings.smtp_from
    message["To"] = ", ".join(recipients)
    message["Subject"] = subject
    message["Message-ID"] = make_msgid(domain="memaudit")
    message.set_content(text)
    return message


def _session(settings: Settings, address: str) -> smtplib.SMTP:
    timeout = settings.callback_timeout_seconds
    context = ssl.create_default_context()
    if settings.smtp_security == "ssl":
        client: smtplib.SMTP = _CheckedSMTPSSL(address, timeout=timeout, context=context)
    else:
        client = _CheckedSMTP(address, timeout=timeout)
    client.connect(settings.smtp_host, settings.smtp_port)
    if settings.smtp_security == "starttls":
        client.starttls(context=context)
    if settings.smtp_user:
        client.login(settings.smtp_user, settings.smtp_password)
    return client


def send(settings: Settings, message: EmailMessage, recipients: Sequence[str]) -> Response:
    """One delivery attempt to the relay; never raises."""
    if not mail_configured(settings):
        return Response(None, "e-mail is not set up (MEMAUDIT_SMTP_HOST, _FROM)", False)
    outside = recipients_outside(list(recipients), settings.smtp_domains)
    if outside:  # the domains may have narrowed since the channel was made: nothing is sent
        return Response(
            None,
            f"{len(outside)} recipient(s) not in MEMAUDIT_SMTP_ALLOWED_DOMAINS; nothing sent",
            retryable=False,
        )
    try:
        address = checked_addresses(
            settings.smtp_host,
            settings.smtp_port,
            [],  # the relay is the operator's own setting: no host allow-list applies
            settings.smtp_allow_private,
            "MEMAUDIT_SMTP_HOST",
            private_setting="MEMAUDIT_SMTP_ALLOW_PRIVATE",
        )[0]
    except UrlNotAllowed as exc:
        return Response(None, f"SMTP relay refused: {exc}", retryable=False)
    try:
        with _session(settings, str(address)) as client:
            refused = client.send_message(message, to_addrs=list(recipients))
    except smtplib.SMTPResponseException as exc:
        # The relay's own words are not kept, as a webhook receiver's body is not: a reply may
        # echo what it was sent (addresses, the login). Its code says what a reader needs.
        temporary = 400 <= exc.smtp_code < 500
        what = "the login" if isinstance(exc, smtplib.SMTPAuthenticationError) else "the message"
        kind = "a temporary refusal" if temporary else "a permanent refusal"
        return Response(
            exc.smtp_code, f"the relay refused {what}: SMTP {exc.smtp_code} ({kind})", temporary
        )
    except smtplib.SMTPRecipientsRefused as exc:
        codes = sorted({code for code, _ in exc.recipients.values()})
        return Response(
            codes[0], f"every recipient refused ({codes})", all(400 <= c < 500 for c in codes)
        )
    except (smtplib.SMTPException, OSError) as exc:
        return Response(None, f"{type(exc).__name__}: {exc}"[:MAX_ERROR_CHARS], retryable=True)
    if refused:
        return Response(OK, f"{len(refused)} recipient(s) refused; the others accepted", False)
    return Response(OK, None, retryable=False)
