"""The audit log page in real Chromium: an admin signs in, finds it in the navigation, reads the
entries the API calls wrote, newest first, and filters them."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import uvicorn

from tests.conftest import wait_for
from tests.e2e.browsers import Watched
from tests.e2e.conftest import free_port

pytestmark = pytest.mark.slow


@contextmanager
def served_in_thread(app, port: int) -> Iterator[str]:
    """The app behind a real uvicorn server in a thread: what Chromium talks to."""
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, lifespan="off")
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 30, "uvicorn to start")
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def test_an_admin_reads_and_filters_the_audit_log(browser, make_stack) -> None:
    port = free_port()
    stack = make_stack(public_url=f"http://127.0.0.1:{port}")
    for method, path, body in [
        ("POST", "/v1/teams", {"name": "fraud"}),
        ("PATCH", "/v1/teams/fraud", {"mlflow_models": ["fraud-*"]}),
    ]:
        response = stack.client.request(method, path, headers=stack.headers, json=body)
        assert response.status_code in (200, 201), response.text
    admin_key = stack.headers["Authorization"].removeprefix("Bearer ")

    with served_in_thread(stack.client.app, port) as base_url:
        watched = Watched(browser, 1280)
        page = watched.page
        try:
            page.goto(f"{base_url}/login")
            page.fill("input[name=key]", admin_key)
            page.click("button[type=submit]")
            page.wait_for_url(f"{base_url}/audits")
            page.click("nav >> text=Audit log")
            page.wait_for_url(f"{base_url}/admin/audit-log")
            rows = page.locator("tr[data-entry]")
            # Newest first: the grant, the team, and the fixture's admin key before them.
            actions = [rows.nth(i).get_attribute("data-action") for i in range(rows.count())]
            assert actions == ["team.updated", "team.created", "key.created"]
            first = rows.first.inner_text()
            assert "test-admin" in first and "fraud-*" in first
            page.fill("input[name=action]", "team.created")
            page.click("form.filters button[type=submit]")
            page.wait_for_url("**action=team.created**")
            assert page.locator("tr[data-entry]").count() == 1
            watched.shot("audit-log")
            assert watched.errors == []
            assert watched.hosts == {"127.0.0.1"}  # nothing fetched from elsewhere
        finally:
            watched.close()
