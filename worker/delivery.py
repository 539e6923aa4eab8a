"""One outbound delivery attempt, whatever it carries (an audit's callback, a notification):
the answer classified as delivered, worth another attempt, or final, and the wait before the
next attempt. Plain Python over HTTP; `worker/tasks.py` schedules the retries."""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus

import httpx

from core.config import Settings
from core.outbound import (
    CALLBACK_HOSTS_SETTING,
    CALLBACK_PRIVATE_SETTING,
    UrlNotAllowed,
    checked_client,
)

MAX_ERROR_CHARS = 500


@dataclass(frozen=True)
class Attempt:
    delivered: bool
    retry: bool  # a later attempt may succeed (a 5xx, 429 or network error)


@dataclass(frozen=True)
class Response:
    status_code: int | None  # an HTTP status or an SMTP reply code; None: no answer
    error: str | None
    retryable: bool  # a network error, a 5xx or a 429 may pass; a refused URL or a 4xx not

    @property
    def delivered(self) -> bool:
        # 2xx is success in HTTP and in SMTP's reply codes alike.
        return self.status_code is not None and 200 <= self.status_code < 300

    @property
    def attempt(self) -> Attempt:
        return Attempt(self.delivered, not self.delivered and self.retryable)


def post(url: str, body: bytes, headers: dict[str, str], settings: Settings) -> Response:
    """The POST itself, each hop (redirects included) held to the callback address rules and
    sent to the address that was checked; a refused URL or a network error is an answer too.
    What the receiver said is kept as its status only: the attempt log is shown to whoever
    chose the URL."""
    client = checked_client(
        settings.callback_hosts,
        settings.callback_allow_private,
        setting=CALLBACK_HOSTS_SETTING,
        private_setting=CALLBACK_PRIVATE_SETTING,
        timeout=settings.callback_timeout_seconds,
        follow_redirects=True,
    )
    try:
        with client:
            answer = client.post(url, content=body, headers=headers)
    except UrlNotAllowed as exc:
        return Response(None, str(exc), retryable=False)
    except (httpx.InvalidURL, ValueError) as exc:  # no later attempt makes the URL valid
        return Response(None, f"{type(exc).__name__}: {exc}", retryable=False)
    except httpx.TooManyRedirects as exc:
        return Response(None, f"TooManyRedirects: {exc}", retryable=False)
    except (httpx.TimeoutException, httpx.ConnectError) as exc:
        return Response(None, f"{type(exc).__name__}: {exc}", retryable=True)
    except httpx.HTTPError as exc:  # a protocol error may quote what the peer sent: never kept
        return Response(None, f"{type(exc).__name__}: no valid HTTP answer", retryable=True)
    code = answer.status_code
    return Response(
        code, None if 200 <= code < 300 else refused_by(code), code >= 500 or code == 429
    )


def refused_by(code: int) -> str:
    """A fixed description of a status: never the receiver's body or reason phrase, which the
    attempt log would hand back to whoever chose the URL (a read-back of an internal service)."""
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = "an unknown status"
    return f"the receiver answered {code} ({phrase})"


def backoff(settings: Settings, attempt: int) -> float:
    """Seconds before attempt `attempt + 1`: the base, doubled after every failure."""
    return settings.callback_backoff_seconds * 2 ** (attempt - 1)
