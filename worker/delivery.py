"""One outbound delivery attempt, whatever it carries (an audit's callback, a notification):
the answer classified as delivered, worth another attempt, or final, and the wait before the
next attempt. Plain Python over HTTP; `worker/tasks.py` schedules the retries."""

from __future__ import annotations

from dataclasses import dataclass

import httpx

from core.config import Settings
from core.outbound import UrlNotAllowed, checked_client

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
    sent to the address that was checked; a refused URL or a network error is an answer too."""
    client = checked_client(
        settings.callback_hosts,
        settings.callback_allow_private,
        setting="MEMAUDIT_CALLBACK_ALLOWED_HOSTS",
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
    except httpx.HTTPError as exc:
        return Response(None, f"{type(exc).__name__}: {exc}", retryable=True)
    code = answer.status_code
    return Response(
        code,
        None if 200 <= code < 300 else answer.text[:MAX_ERROR_CHARS],
        code >= 500 or code == 429,
    )


def backoff(settings: Settings, attempt: int) -> float:
    """Seconds before attempt `attempt + 1`: the base, doubled after every failure."""
    return settings.callback_backoff_seconds * 2 ** (attempt - 1)
