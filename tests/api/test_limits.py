"""Every configured limit is a clear 4xx that names the limit, and nothing is stored."""

from __future__ import annotations

import pytest
from sqlalchemy import func, select

from app.keys import create_key
from app.models import ApiKey, Audit, Dataset
from tests.conftest import filler_records, write_jsonl


def _count(stack, model) -> int:
    with stack.db.session() as session:
        return session.scalar(select(func.count()).select_from(model))


def _upload(stack, content: bytes):
    return stack.client.post(
        "/v1/datasets", headers=stack.headers, files={"file": ("d.jsonl", content)}
    )


def test_upload_size_records_and_record_length(make_stack, tmp_path) -> None:
    stack = make_stack(max_upload_bytes=4000, max_records_per_dataset=10, max_record_chars=200)
    records = filler_records(11)
    too_many = write_jsonl(tmp_path / "many.jsonl", records).read_bytes()
    response = _upload(stack, too_many)
    assert response.status_code == 413, response.text
    error = response.json()["error"]
    assert error["code"] == "limit_exceeded"
    assert error["detail"] == {"limit": "max_records_per_dataset", "value": 11, "line": 11}
    assert "MEMAUDIT_MAX_RECORDS_PER_DATASET" in error["message"]

    long_text = write_jsonl(tmp_path / "long.jsonl", [{"text": "x" * 201}]).read_bytes()
    error = _upload(stack, long_text).json()["error"]
    assert error["detail"] == {"limit": "max_record_chars", "value": 201, "line": 1}

    big = b"\n" * 4001  # blank lines: the size limit holds before anything is parsed
    response = _upload(stack, big)
    assert response.status_code == 413
    assert response.json()["error"]["detail"]["limit"] == "max_upload_bytes"

    assert _count(stack, Dataset) == 0
    assert list(stack.settings.datasets_dir.iterdir()) == []  # no partial files left behind
    ok = write_jsonl(tmp_path / "ok.jsonl", records[:10]).read_bytes()
    assert _upload(stack, ok).status_code == 201


def test_a_dataset_named_by_path_is_held_to_the_same_limits(make_stack, tiny_lm, body) -> None:
    stack = make_stack(max_records_per_dataset=47)  # the canary set has 48
    response = stack.client.post("/v1/audits", headers=stack.headers, json=body)
    assert response.status_code == 413, response.text
    assert response.json()["error"]["detail"]["limit"] == "max_records_per_dataset"
    assert _count(stack, Audit) == 0


@pytest.mark.parametrize(
    "params",
    [
        {"prefix_tokens": 10**9},
        {"suffix_tokens": 0},
        {"n_grid": list(range(1, 100))},
        {"p_grid": [0.5] * 40},
        {"schemes": [{"temperature": 1000}]},
        {"schemes": [{"top_k": 1}] * 17},
    ],
)
def test_params_out_of_range_are_refused(make_stack, body, params) -> None:
    stack = make_stack()
    body["checks"] = [{"kind": "extraction", "params": params}]
    response = stack.client.post("/v1/audits", headers=stack.headers, json=body)
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "invalid_params"
    assert _count(stack, Audit) == 0


def test_active_audits_per_key(make_stack, body) -> None:
    stack = make_stack(max_active_audits_per_key=2)
    with stack.db.session() as session:
        other = {"Authorization": f"Bearer {create_key(session, 'other', 'submit')}"}
    first = stack.client.post("/v1/audits", headers=stack.headers, json=body).json()
    stack.client.post("/v1/audits", headers=stack.headers, json=body)
    third = stack.client.post("/v1/audits", headers=stack.headers, json=body)
    assert third.status_code == 429, third.text
    error = third.json()["error"]
    assert error["code"] == "too_many_active_audits" and error["detail"]["value"] == 2
    # Another key has its own allowance, and a finished audit frees a place.
    assert stack.client.post("/v1/audits", headers=other, json=body).status_code == 202
    stack.client.post(f"/v1/audits/{first['id']}/cancel", headers=stack.headers)
    assert stack.client.post("/v1/audits", headers=stack.headers, json=body).status_code == 202
    assert _count(stack, Audit) == 4


def test_audits_and_datasets_record_who_created_them(make_stack, body, tmp_path) -> None:
    stack = make_stack()
    with stack.db.session() as session:
        key = create_key(session, "uploader", "submit")
    headers = {"Authorization": f"Bearer {key}"}
    content = write_jsonl(tmp_path / "d.jsonl", filler_records(3)).read_bytes()
    dataset = stack.client.post(
        "/v1/datasets", headers=headers, files={"file": ("d.jsonl", content)}
    ).json()
    audit = stack.client.post("/v1/audits", headers=headers, json=body).json()
    with stack.db.session() as session:
        uploader = session.scalar(select(ApiKey.id).where(ApiKey.name == "uploader"))
        stored = session.get(Dataset, dataset["id"]).created_by
    assert dataset["created_by"] == stored == uploader and audit["created_by"] == uploader
