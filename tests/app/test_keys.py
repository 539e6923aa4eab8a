"""`memaudit keys create|list|revoke`: a revoked key stops working at once, dashboard included."""

from __future__ import annotations

import argparse

from app.cli_admin import cmd_keys_create, cmd_keys_list, cmd_keys_revoke
from tests.flows import session_cookie


def test_create_list_and_revoke(make_stack, capsys) -> None:
    stack = make_stack()
    assert (
        cmd_keys_create(stack.settings, argparse.Namespace(name="ci", scope="read", team=None)) == 0
    )
    key = capsys.readouterr().out.strip()
    headers = {"Authorization": f"Bearer {key}"}
    assert stack.client.get("/v1/audits", headers=headers).status_code == 200

    assert cmd_keys_list(stack.settings, argparse.Namespace()) == 0
    listing = capsys.readouterr().out
    assert key[:12] in listing and "ci" in listing and key not in listing  # never the secret

    prefix = next(line.split()[1] for line in listing.splitlines() if line.endswith(" ci"))
    signed_in = session_cookie(stack.client, key)
    assert stack.client.get("/audits", follow_redirects=False).status_code == 200
    assert cmd_keys_revoke(stack.settings, argparse.Namespace(key=prefix)) == 0
    assert "revoked" in capsys.readouterr().out
    response = stack.client.get("/v1/audits", headers=headers)
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_key"
    # Its browser sessions end with it.
    stack.client.cookies.update(signed_in)
    assert stack.client.get("/audits", follow_redirects=False).status_code == 303
    assert stack.client.get("/v1/audits").status_code == 401
    assert (
        "(revoked)"
        in (cmd_keys_list(stack.settings, argparse.Namespace()), capsys.readouterr().out)[1]
    )
    assert cmd_keys_revoke(stack.settings, argparse.Namespace(key="nope")) == 2
