"""OpenAI-compatible chat endpoints as audited models: `openai:<model>@<base URL>`.

`openai:gpt-4o-mini@https://api.openai.com/v1` is the model `gpt-4o-mini` behind that base URL;
requests go to `<base URL>/chat/completions`. An endpoint is a request the service makes on
a user's behalf, so its host must match the operator's allow-list
(MEMAUDIT_CHAT_ENDPOINT_HOSTS: host globs, or base-URL globs that pin scheme, port and path);
an empty list refuses every endpoint. Listed hosts may be private (an internal vLLM server is
the usual case). The API key comes from the worker's settings, never from the audit, and which
endpoint models a team may audit is its grant (`<model>@<base URL>` globs).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from fnmatch import fnmatchcase
from urllib.parse import urlsplit

import httpx
from tenacity import (
    RetryCallState,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_random_exponential,
)

from core.inspection.errors import ModelError
from core.outbound import UrlNotAllowed, checked_client

PREFIX = "openai:"
HOSTS_SETTING = "MEMAUDIT_CHAT_ENDPOINT_HOSTS"
RETRY_STATUSES = {408, 409, 429, 500, 502, 503, 504}
ATTEMPTS = 4
# Full jitter: uniform over [0, 2], [0, 4], [0, 8] s; clients that failed together spread out.
BACKOFF = wait_random_exponential(multiplier=2, max=30)
MAX_WAIT_SECONDS = 60.0  # a longer Retry-After is cut to this: the shard retries later anyway


@dataclass(frozen=True)
class Endpoint:
    uri: str
    model: str
    base_url: str

    @property
    def completions_url(self) -> str:
        return self.base_url.rstrip("/") + "/chat/completions"


def is_endpoint(uri: str) -> bool:
    return uri.startswith(PREFIX)


def parse_uri(uri: str, allowed_hosts: Sequence[str]) -> Endpoint:
    """The endpoint, or ModelError when the URI is malformed or its host is not allowed."""
    if not is_endpoint(uri):
        raise ModelError(f"not a chat endpoint URI: {uri!r}")
    model, at, base_url = uri[len(PREFIX) :].partition("@")
    parts = urlsplit(base_url)
    if not at or not model or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ModelError(
            f"{uri!r}: use openai:<model>@<base URL>, e.g. "
            "openai:gpt-4o-mini@https://api.openai.com/v1"
        )
    host = parts.hostname.lower()
    if not any(_allowed(pattern, host, base_url) for pattern in allowed_hosts):
        listed = ", ".join(allowed_hosts) or "none are allowed"
        raise ModelError(f"chat endpoint host {host!r} is not in {HOSTS_SETTING} ({listed})")
    return Endpoint(uri, model, base_url)


def _allowed(pattern: str, host: str, base_url: str) -> bool:
    """A host glob allows any port and path on the host; a base-URL glob (with `://`) pins the
    scheme, port and path too, since the endpoint key goes wherever a URL is allowed."""
    if "://" in pattern:
        return fnmatchcase(base_url.rstrip("/").lower(), pattern.rstrip("/").lower())
    return fnmatchcase(host, pattern.lower())


class EndpointUnavailable(ConnectionError):
    """Transient: the endpoint kept failing; the shard goes back for another attempt."""


class _Transient(Exception):
    """One failed request that a later one may pass: a network error, a 429 or a 5xx."""

    def __init__(self, problem: str, retry_after: float | None = None) -> None:
        super().__init__(problem)
        self.retry_after = retry_after


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A Retry-After header in seconds: delta-seconds or an HTTP date (RFC 9110 §10.2.3);
    None when absent or unreadable, 0 for a date already past."""
    if not value or not value.strip():
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:  # RFC 850 and asctime dates carry no zone: they are GMT
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())


def _wait(state: RetryCallState) -> float:
    """The jittered backoff, or longer when the server asked for it, never past the cap."""
    backoff = BACKOFF(state)
    failure = state.outcome.exception() if state.outcome else None
    asked = failure.retry_after if isinstance(failure, _Transient) else None
    return min(max(backoff, asked or 0.0), MAX_WAIT_SECONDS)


class EndpointChat:
    """Greedy (temperature 0) chat completions, one request per conversation, with retries for
    rate limits and transient server errors. `sleep` is how retries wait (tests pass their own
    to see the waits without sitting through them)."""

    def __init__(
        self,
        endpoint: Endpoint,
        api_key: str,
        *,
        timeout: float,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.endpoint = endpoint
        self._sleep = sleep
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        # The allow-list was checked by parse_uri; listed hosts may be private, and each request
        # still goes to the address it checked (no redirects: the key stays with this host).
        host = (urlsplit(endpoint.base_url).hostname or "").lower()
        self._client = checked_client(
            [host],
            True,
            setting=HOSTS_SETTING,
            private_setting=HOSTS_SETTING,  # a listed host may be private: never refused as such
            timeout=timeout,
            headers=headers,
        )

    def reply(self, messages: Sequence[dict[str, str]], max_new_tokens: int) -> str:
        body = {
            "model": self.endpoint.model,
            "messages": list(messages),
            "temperature": 0,
            "max_tokens": max_new_tokens,
        }
        retrying = Retrying(
            stop=stop_after_attempt(ATTEMPTS),
            wait=_wait,
            retry=retry_if_exception_type(_Transient),
            sleep=self._sleep,
            reraise=True,
        )
        try:
            return _content(retrying(self._post, body))
        except _Transient as exc:
            raise EndpointUnavailable(
                f"{self.endpoint.completions_url} failed {ATTEMPTS} times: {exc}"
            ) from None

    def _post(self, body: dict) -> httpx.Response:
        """One request: the answer, ModelError when retrying cannot help, else _Transient."""
        try:
            response = self._client.post(self.endpoint.completions_url, json=body)
        except UrlNotAllowed as exc:
            raise ModelError(str(exc)) from None
        except httpx.TransportError as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from None
        if response.status_code in RETRY_STATUSES:
            asked = retry_after_seconds(response.headers.get("Retry-After"))
            raise _Transient(f"HTTP {response.status_code}", asked)
        if response.status_code != 200:
            # Not retried: a wrong model name or key does not mend itself.
            raise ModelError(
                f"{self.endpoint.completions_url} answered HTTP {response.status_code}: "
                f"{response.text[:300]}"
            )
        return response

    def __call__(
        self, conversations: Sequence[Sequence[dict[str, str]]], max_new_tokens: int
    ) -> list[str]:
        return [self.reply(messages, max_new_tokens) for messages in conversations]

    def generate(self, prompts: Sequence[str], max_new_tokens: int, _chat: str) -> list[str]:
        """Single-turn prompts, each as one user message."""
        return [self.reply([{"role": "user", "content": p}], max_new_tokens) for p in prompts]


def _content(response: httpx.Response) -> str:
    try:
        content = response.json()["choices"][0]["message"]["content"]
    except (ValueError, KeyError, IndexError, TypeError):
        raise ModelError(f"not an OpenAI chat completion: {response.text[:300]!r}") from None
    return content if isinstance(content, str) else ""
