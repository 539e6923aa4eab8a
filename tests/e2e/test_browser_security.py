"""A signed-in user's browser, attacked from another port of the same host, in real Chromium.

Cookies are not confined to a port, so a page served on another port of the same host is
same-site: SameSite does not stop it sending the session cookie. What must stop it is the
server: a session cookie only reads, every change needs a Bearer key or the session's CSRF
token from a page of the service's own origin, and sign-in is CSRF-protected.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlparse

import pytest
from sqlalchemy import create_engine, func, select

from core.models import Dataset
from tests.conftest import filler_records, write_jsonl
from tests.e2e.browsers import Watched
from tests.e2e.conftest import Served

pytestmark = pytest.mark.slow


@contextmanager
def attacker_site(pages: dict[str, str]) -> Iterator[str]:
    """Another origin on the same host: 127.0.0.1, another port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = pages.get(urlparse(self.path).path, "").encode()
            self.send_response(200 if body else 404)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()


def _sign_in(watched: Watched, served: Served, key: str, next_path: str = "/audits") -> None:
    page = watched.page
    page.goto(f"{served.base_url}/login?next={next_path}")
    page.fill("input[name=key]", key)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")


def _dataset_count(served: Served) -> int:
    engine = create_engine(f"sqlite:///{served.data_root.parent / 'data' / 'memaudit.db'}")
    try:
        with engine.connect() as connection:
            return connection.scalar(select(func.count()).select_from(Dataset.__table__))
    finally:
        engine.dispose()


@pytest.fixture(scope="module")
def running_audit(served: Served, tiny_lm) -> dict:
    """A long audit (1,500 records) that stays cancellable while the attacks run."""
    big = write_jsonl(served.data_root / "long.jsonl", filler_records(1500, seed=9))
    body = {
        "model": {"uri": f"path:{tiny_lm.model_dir}"},
        "dataset": {"uri": f"path:{big}"},
        "checks": [{"kind": "loss", "params": {}}],
    }
    response = served.client.post("/v1/audits", headers=served.headers, json=body)
    assert response.status_code == 202, response.text
    return response.json()


def test_a_page_on_another_port_cannot_act_with_the_session(
    browser, served: Served, running_audit: dict, tiny_lm
) -> None:
    watched = Watched(browser, 1280)
    _sign_in(watched, served, served.key)
    cookies = {c["name"]: c for c in watched.context.cookies()}
    session = cookies["memaudit_session"]
    assert session["httpOnly"] and session["value"] != served.key  # an id, never the key
    before = _dataset_count(served)
    audit_id = running_audit["id"]
    attack = f"""<!doctype html><title>win a prize</title><script>
      const target = "{served.base_url}";
      const form = new FormData();
      form.append("file", new Blob(['{{"text": "planted"}}\\n']), "planted.jsonl");
      Promise.allSettled([
        fetch(target + "/v1/audits/{audit_id}/cancel", {{method: "POST", credentials: "include"}}),
        fetch(target + "/v1/datasets", {{method: "POST", body: form, credentials: "include"}}),
      ]).then(() => {{ document.title = "done"; }});
    </script>"""
    with attacker_site({"/": attack}) as evil:
        watched.page.goto(evil)
        watched.page.wait_for_function("document.title === 'done'", timeout=15000)
    audit = served.client.get(f"/v1/audits/{audit_id}", headers=served.headers).json()
    assert not audit["cancel_requested"] and audit["status"] in ("queued", "running")
    assert _dataset_count(served) == before
    # The same user's own page can still act: the CSRF token and the service's origin.
    watched.page.goto(f"{served.base_url}/audits")
    token = watched.page.eval_on_selector("input[name=csrf_token]", "e => e.value")
    status = watched.page.evaluate(
        """([id, token]) => fetch(`/v1/audits/${id}/cancel`, {method: "POST",
               headers: {"X-CSRF-Token": token}}).then(r => r.status)""",
        [audit_id, token],
    )
    assert status == 200
    assert served.client.get(f"/v1/audits/{audit_id}", headers=served.headers).json()[
        "cancel_requested"
    ]
    watched.close()


def test_a_cross_site_login_cannot_sign_the_victim_in_as_someone_else(
    browser, served: Served
) -> None:
    team = served.client.post(
        "/v1/teams", headers=served.headers, json={"name": "intruders"}
    ).json()
    intruder = served.client.post(
        "/v1/keys",
        headers=served.headers,
        json={"name": "intruder", "scope": "read", "team": team["name"]},
    ).json()["key"]
    watched = Watched(browser, 1280)
    _sign_in(watched, served, served.key)

    def session() -> str:
        return next(
            c["value"] for c in watched.context.cookies() if c["name"] == "memaudit_session"
        )

    mine = session()
    forged = f"""<!doctype html><form method="post" action="{served.base_url}/login">
      <input name="key" value="{intruder}"><input name="next" value="/audits">
      <input name="nonce" value="guessed"></form>
      <script>document.forms[0].submit()</script>"""
    with attacker_site({"/": forged}) as evil:
        watched.page.goto(evil)
        watched.page.wait_for_url(f"{served.base_url}/login", timeout=15000)
        assert "Sign in from" in watched.page.content()
    assert session() == mine  # still the victim's own session
    body = watched.page.evaluate("fetch('/v1/audits').then(r => r.json())")
    assert body["count"] >= 1  # the victim's view, not the intruders' empty one
    watched.close()


@pytest.mark.parametrize("next_path", ["/\\evil.example", "//evil.example", "https://evil.example"])
def test_after_sign_in_the_browser_stays_on_the_service(
    browser, served: Served, next_path: str
) -> None:
    watched = Watched(browser, 1280)
    page = watched.page
    page.goto(f"{served.base_url}/login")
    page.evaluate("n => { document.querySelector('input[name=next]').value = n; }", next_path)
    page.fill("input[name=key]", served.key)
    page.click("button[type=submit]")
    page.wait_for_load_state("networkidle")
    assert page.url == f"{served.base_url}/audits"
    assert watched.hosts == {"127.0.0.1"}
    watched.close()


def test_a_revoked_key_ends_its_sessions(browser, served: Served) -> None:
    made = served.client.post(
        "/v1/keys", headers=served.headers, json={"name": "temp", "scope": "read"}
    ).json()
    watched = Watched(browser, 1280)
    _sign_in(watched, served, made["key"])
    assert watched.page.url.endswith("/audits")
    served.client.delete(f"/v1/keys/{made['id']}", headers=served.headers)
    watched.page.goto(f"{served.base_url}/audits")
    assert "/login" in watched.page.url
    watched.close()


def test_docs_load_nothing_from_outside_under_the_policy(browser, served: Served) -> None:
    watched = Watched(browser, 1280)
    _sign_in(watched, served, served.key)
    response = watched.page.goto(f"{served.base_url}/docs")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    watched.page.wait_for_selector(".swagger-ui .information-container", timeout=30000)
    assert "memaudit" in watched.page.inner_text(".swagger-ui .title")
    watched.page.wait_for_selector(".opblock-tag-section", timeout=30000)
    watched.shot("docs")
    assert watched.hosts == {"127.0.0.1"}, watched.urls
    assert not watched.errors, watched.errors  # a CSP violation is a console error
    for path in ["/v1/audits", "/static/memaudit.css", "/login", "/healthz"]:
        headers = served.client.get(path, headers=served.headers).headers
        assert "script-src 'self'" in headers["content-security-policy"], path
    watched.close()
