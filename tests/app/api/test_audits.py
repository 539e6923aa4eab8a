"""Submitting audits: every bad input gets a clear 4xx and leaves nothing queued."""

from __future__ import annotations

import os
import shutil

import pytest
from sqlalchemy import func, select

from app.keys import create_key
from core.models import Audit, Shard
from tests.conftest import filler_records, write_jsonl
from tests.flows import sign_in


def queued_messages(stack) -> int:
    """Messages waiting on the broker for this stack's queue (0 when it was never declared)."""
    with stack.client.app.state.celery.connection_for_read() as connection:
        try:
            return connection.default_channel.queue_declare(
                queue=stack.settings.queue, passive=True
            ).message_count
        except Exception:
            return 0


def rows(stack, model) -> int:
    with stack.db.session() as session:
        return session.scalar(select(func.count()).select_from(model))


@pytest.fixture
def stack(make_stack):
    return make_stack()


def test_a_valid_submission_writes_shards_and_enqueues_them(stack, body) -> None:
    response = stack.client.post("/v1/audits", headers=stack.headers, json=body)
    assert response.status_code == 202, response.text
    audit = response.json()
    assert audit["status"] == "queued" and audit["progress"] == {"done": 0, "total": 48}
    assert audit["checks"] == [{"kind": "loss", "params": {"max_tokens": None}}]
    assert rows(stack, Shard) == 3 and queued_messages(stack) == 3  # 48 records, shards of 16


def _bad(stack, expected_status: int, expected_code: str, **request) -> dict:
    response = stack.client.post("/v1/audits", **request)
    assert response.status_code == expected_status, response.text
    error = response.json()["error"]
    assert error["code"] == expected_code and error["message"]
    assert rows(stack, Audit) == 0 and rows(stack, Shard) == 0 and queued_messages(stack) == 0
    return error


def test_unknown_check_kind(stack, body) -> None:
    body["checks"] = [{"kind": "telepathy", "params": {}}]
    error = _bad(stack, 422, "unknown_check_kind", headers=stack.headers, json=body)
    assert error["message"].endswith(
        "available: approximate, capacity, cfg_basin, cfg_mitigation, contamination, coverage, "
        "diversity, duplication, extraction, finetune, kk_memorization, lid, loss, membership, "
        "near_duplicates, pii, proxies, retention, unlearning, wilt"
    )


def test_invalid_params(stack, body) -> None:
    body["checks"] = [{"kind": "loss", "params": {"max_tokens": 1}}]
    error = _bad(stack, 422, "invalid_params", headers=stack.headers, json=body)
    assert error["detail"][0]["loc"] == ["checks", 0, "params", "max_tokens"]
    body["checks"] = [{"kind": "loss", "params": {"no_such_param": 3}}]
    _bad(stack, 422, "invalid_params", headers=stack.headers, json=body)


def test_model_path_outside_the_roots(stack, body, tmp_path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    body["model"]["uri"] = f"path:{elsewhere}"
    error = _bad(stack, 422, "invalid_model", headers=stack.headers, json=body)
    assert "is outside the folders you may read" in error["message"]
    body["model"]["uri"] = f"path:{stack.settings.model_root_paths[0]}/../../elsewhere"
    _bad(stack, 422, "invalid_model", headers=stack.headers, json=body)


def test_outside_the_roots_nobody_learns_whether_a_path_exists(stack, body, tmp_path) -> None:
    (tmp_path / "secret-model").mkdir()
    (tmp_path / "secret.jsonl").write_text('{"text": "x"}\n')
    answers = set()
    for field, raw in [
        ("model", tmp_path / "secret-model"),
        ("model", tmp_path / "no-such-model"),
        ("dataset", tmp_path / "secret.jsonl"),
        ("dataset", tmp_path / "no-such.jsonl"),
    ]:
        request = {**body, field: {"uri": f"path:{raw}"}}
        response = stack.client.post("/v1/audits", headers=stack.headers, json=request)
        answers.add((field, response.status_code, response.text.replace(str(raw), "<path>")))
    assert len(answers) == 2, answers  # one answer per field, whatever exists


def test_a_model_whose_files_link_out_of_the_root_is_refused(
    stack, body, tiny_lm, tmp_path
) -> None:
    model = tiny_lm.model_dir.parent / "linked-out"
    model.mkdir()
    try:
        for file in tiny_lm.model_dir.iterdir():
            os.symlink(file, model / file.name)  # inside the root: allowed
        body["model"]["uri"] = f"path:{model}"
        assert stack.client.post("/v1/audits", headers=stack.headers, json=body).status_code == 202
        (tmp_path / "config.json").write_text((tiny_lm.model_dir / "config.json").read_text())
        (model / "config.json").unlink()
        os.symlink(tmp_path / "config.json", model / "config.json")  # outside: refused
        error = _bad_after(stack, 422, "invalid_model", headers=stack.headers, json=body)
        assert "config.json is a link that leads outside" in error["message"]
    finally:
        shutil.rmtree(model)


def _bad_after(stack, expected_status: int, expected_code: str, **request) -> dict:
    before = rows(stack, Audit)
    response = stack.client.post("/v1/audits", **request)
    assert response.status_code == expected_status, response.text
    assert rows(stack, Audit) == before
    return response.json()["error"]


def test_missing_files(stack, body, tiny_lm) -> None:
    body["model"]["uri"] = f"path:{tiny_lm.model_dir.parent / 'no-such-model'}"
    assert (
        "does not exist"
        in _bad(stack, 422, "invalid_model", headers=stack.headers, json=body)["message"]
    )
    body["model"]["uri"] = f"path:{tiny_lm.model_dir}"
    body["dataset"]["uri"] = f"path:{tiny_lm.dataset_path.parent / 'no-such.jsonl'}"
    assert (
        "does not exist"
        in _bad(stack, 422, "invalid_dataset", headers=stack.headers, json=body)["message"]
    )
    body["dataset"]["uri"] = "dataset:ds_000000000000000000000000"
    _bad(stack, 422, "unknown_dataset", headers=stack.headers, json=body)


def test_dataset_without_the_needed_fields(stack, body, tiny_lm) -> None:
    path = write_jsonl(tiny_lm.dataset_path.parent / "no-text.jsonl", [{"id": 1, "body": "x"}])
    body["dataset"]["uri"] = f"path:{path}"
    error = _bad(stack, 422, "missing_dataset_fields", headers=stack.headers, json=body)
    assert "text" in error["message"]


def test_non_json_body(stack) -> None:
    _bad(
        stack,
        400,
        "invalid_json",
        content=b"{not json",
        headers={**stack.headers, "Content-Type": "application/json"},
    )


def test_body_that_does_not_match_the_schema(stack, body) -> None:
    body["checks"] = []
    _bad(stack, 422, "invalid_request", headers=stack.headers, json=body)


def test_missing_auth(stack, body) -> None:
    _bad(stack, 401, "unauthorized", json=body)


def test_wrong_key(stack, body) -> None:
    _bad(stack, 401, "invalid_key", json=body, headers={"Authorization": "Bearer ma_nope"})
    _bad(stack, 401, "invalid_key", json=body, headers={"Authorization": "Basic abc"})


def test_read_key_cannot_submit(stack, body) -> None:
    with stack.db.session() as session:
        key = create_key(session, "reader", "read")
    _bad(stack, 403, "forbidden", json=body, headers={"Authorization": f"Bearer {key}"})


def test_every_route_but_health_needs_a_key(stack) -> None:
    """Enumerated from the app itself, so a new route cannot be left open by accident."""
    assert stack.client.get("/healthz").status_code == 200
    ready = stack.client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "broker": "ok"}
    checked = 0
    for template, operations in stack.client.app.openapi()["paths"].items():
        if not template.startswith("/v1/"):
            continue
        path = template.replace("{", "").replace("}", "")  # every path parameter: its name
        for method in operations:
            response = stack.client.request(method.upper(), path)
            checked += 1
            if template.startswith("/v1/hooks/"):  # signed, not keyed: refused unsigned
                assert response.status_code in (401, 404), (method, path, response.text)
                continue
            assert response.status_code == 401, (method, path, response.text)
            assert response.json()["error"]["code"] == "unauthorized"
    assert checked >= 15
    assert stack.client.get("/audits", follow_redirects=False).status_code == 303


def test_idempotency_key_returns_the_same_audit(stack, body) -> None:
    body["idempotency_key"] = "release-42"
    first = stack.client.post("/v1/audits", headers=stack.headers, json=body)
    again = stack.client.post("/v1/audits", headers=stack.headers, json=body)
    assert first.status_code == 202 and again.status_code == 200
    assert first.json()["id"] == again.json()["id"] and rows(stack, Audit) == 1
    body["checks"] = [{"kind": "loss", "params": {"max_tokens": 16}}]
    conflict = stack.client.post("/v1/audits", headers=stack.headers, json=body)
    assert conflict.status_code == 409


def test_checks_registry_is_published(stack) -> None:
    checks = stack.client.get("/v1/checks", headers=stack.headers).json()
    loss = next(c for c in checks["data"] if c["kind"] == "loss")
    assert loss["model_kinds"] == ["causal_lm"] and loss["required_fields"] == ["text"]
    assert loss["metrics"][0]["name"] == "loss"
    assert loss["metrics"][0]["higher_is_more_memorized"] is False
    lid = next(c for c in checks["data"] if c["kind"] == "lid")
    assert lid["required_params"] == ["training_images", "t0"]
    assert lid["defaults"]["t0_grid"] == [10, 50, 100, 200] and "t0" not in lid["defaults"]


def test_list_filters_and_paging(stack, body) -> None:
    for label in ("a", "b", "a"):
        stack.client.post(
            "/v1/audits", headers=stack.headers, json={**body, "labels": {"x": label}}
        )
    listed = stack.client.get(
        "/v1/audits", headers=stack.headers, params={"label": "x:a", "limit": 1}
    ).json()
    assert listed["count"] == 2 and len(listed["data"]) == 1
    assert (
        stack.client.get(
            "/v1/audits", headers=stack.headers, params={"status": "succeeded"}
        ).json()["count"]
        == 0
    )
    assert stack.client.get("/v1/audits/nope", headers=stack.headers).status_code == 404


def test_cancel_a_queued_audit(stack, body) -> None:
    audit = stack.client.post("/v1/audits", headers=stack.headers, json=body).json()
    cancelled = stack.client.post(f"/v1/audits/{audit['id']}/cancel", headers=stack.headers)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    with stack.db.session() as session:
        assert {s.status for s in session.scalars(select(Shard))} == {"cancelled"}


def test_dashboard_login_sets_an_http_only_cookie(stack) -> None:
    key = stack.headers["Authorization"].split()[1]
    bad = sign_in(stack.client, "ma_wrong")
    assert bad.status_code == 401
    good = sign_in(stack.client, key, "//evil.example")
    assert good.status_code == 303 and good.headers["location"] == "/audits"
    cookie = good.headers["set-cookie"].lower()
    assert "httponly" in cookie and "samesite=strict" in cookie
    assert stack.client.get("/audits").status_code == 200


def test_uploads_are_content_addressed_and_validated(stack, tmp_path) -> None:
    good = write_jsonl(tmp_path / "d.jsonl", filler_records(5))
    first = stack.client.post(
        "/v1/datasets", headers=stack.headers, files={"file": ("d.jsonl", good.read_bytes())}
    )
    second = stack.client.post(
        "/v1/datasets", headers=stack.headers, files={"file": ("copy.jsonl", good.read_bytes())}
    )
    assert first.status_code == 201 and second.status_code == 200
    assert first.json()["id"] == second.json()["id"] and first.json()["n_records"] == 5
    assert first.json()["fields"] == ["id", "text"]
    broken = good.read_bytes() + b"[1, 2]\n"
    response = stack.client.post(
        "/v1/datasets", headers=stack.headers, files={"file": ("bad.jsonl", broken)}
    )
    assert response.status_code == 422 and response.json()["error"]["detail"] == {"line": 6}


def test_ref_score_needs_a_reference_model(stack, body) -> None:
    body["checks"] = [{"kind": "membership", "params": {"scores": ["ref"]}}]
    error = _bad(stack, 422, "invalid_params", headers=stack.headers, json=body)
    assert "reference_model" in error["message"]


def test_sampling_processors_that_need_context_are_refused(stack, body) -> None:
    body["checks"] = [
        {
            "kind": "extraction",
            "params": {"schemes": [{"temperature": 1.0, "repetition_penalty": 1.3}]},
        }
    ]
    error = _bad(stack, 422, "invalid_params", headers=stack.headers, json=body)
    assert "never approximated" in error["detail"][0]["msg"]


def test_order_by_must_name_a_numeric_field(stack, body) -> None:
    audit = stack.client.post("/v1/audits", headers=stack.headers, json=body).json()
    url = f"/v1/audits/{audit['id']}/samples"
    assert (
        stack.client.get(
            url, headers=stack.headers, params={"check": "loss", "order_by": "loss"}
        ).status_code
        == 200
    )
    for params in (
        {"order_by": "loss"},
        {"check": "loss", "order_by": "text"},
        {"check": "membership"},
    ):
        assert stack.client.get(url, headers=stack.headers, params=params).status_code == 422


def test_openapi_docs_for_key_holders(stack) -> None:
    schema = stack.client.get("/openapi.json", headers=stack.headers)
    assert schema.status_code == 200 and "/v1/audits" in schema.json()["paths"]
    docs = stack.client.get("/docs", headers=stack.headers)
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
