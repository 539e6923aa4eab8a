"""Every configured limit is a clear 4xx that names the limit, and nothing is stored."""

from __future__ import annotations

import json
import shutil
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import pytest
import uvicorn
from sqlalchemy import func, select

from app.keys import create_key
from core.models import ApiKey, Audit, Dataset
from tests.conftest import filler_records, wait_for, write_jsonl


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


def _post_json(stack, content: bytes, **headers):
    return stack.client.post(
        "/v1/audits",
        content=content,
        headers={**stack.headers, "Content-Type": "application/json", **headers},
    )


def test_json_bodies_are_bounded_as_they_stream(make_stack, body) -> None:
    stack = make_stack(max_json_body_bytes=64 * 1024)
    padded = json.dumps({**body, "labels": {"pad": "x" * 200}}).encode() + b" " * (70 * 1024)
    declared = _post_json(stack, padded)
    assert declared.status_code == 413, declared.text
    assert declared.json()["error"]["detail"]["limit"] == "max_json_body_bytes"

    def chunks():  # no Content-Length: counted as it arrives
        yield padded[:1024]
        yield padded[1024:]

    streamed = stack.client.post(
        "/v1/audits",
        content=chunks(),
        headers={**stack.headers, "Content-Type": "application/json"},
    )
    assert streamed.status_code == 413 and streamed.json()["error"]["code"] == "limit_exceeded"
    hook = stack.client.post("/v1/hooks/mlflow", content=padded)
    assert hook.status_code == 413
    assert _count(stack, Audit) == 0


def test_nesting_and_encoding_are_refused_with_the_line(make_stack, body, tmp_path) -> None:
    stack = make_stack()
    nested = json.dumps(body, indent=1)[:-1] + ',\n"labels": ' + "[" * 5000 + "]" * 5000 + "}"
    response = _post_json(stack, nested.encode())
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert "nested deeper than 64" in error["message"] and error["detail"]["line"] > 1
    lone = json.dumps(body, indent=1)[:-1] + ',\n"labels": {"team": "\\ud800"}}'
    response = _post_json(stack, lone.encode())
    assert response.status_code == 400 and "lone surrogate" in response.text
    assert response.json()["error"]["detail"]["line"] == lone.count("\n") + 1
    raw = json.dumps(body).encode()[:-1] + b', "labels": {"team": "\xed\xa0\x80"}}'
    response = _post_json(stack, raw)
    assert response.status_code == 400 and "not valid UTF-8" in response.text
    hook = stack.client.post("/v1/hooks/huggingface", content=b"[" * 100_000)
    assert hook.status_code == 400
    # In an upload, the record's own line.
    for line in [b'{"text": "\\udc00"}', b'{"text": "a", "x": ' + b"[" * 200 + b"]" * 200 + b"}"]:
        content = b'{"text": "fine"}\n' + line + b"\n"
        upload = stack.client.post(
            "/v1/datasets", headers=stack.headers, files={"file": ("d.jsonl", content)}
        )
        assert upload.status_code == 422, upload.text
        assert upload.json()["error"]["detail"]["line"] == 2
    assert _count(stack, Audit) == 0 and _count(stack, Dataset) == 0


def test_a_deep_model_config_is_a_clear_refusal(make_stack, body, tiny_lm) -> None:
    stack = make_stack()
    copy = tiny_lm.model_dir.parent / "deep-config"
    shutil.copytree(tiny_lm.model_dir, copy, dirs_exist_ok=True)
    try:
        (copy / "config.json").write_text('{"architectures": ' + "[" * 10_000 + "]" * 10_000 + "}")
        body["model"]["uri"] = f"path:{copy}"
        response = stack.client.post("/v1/audits", headers=stack.headers, json=body)
        assert response.status_code == 422, response.text
        assert "config.json is not valid JSON" in response.json()["error"]["message"]
    finally:
        shutil.rmtree(copy)


@pytest.mark.parametrize(
    "labels",
    [
        {f"k{i}": "v" for i in range(100)},
        {"k" * 100: "v"},
        {"k": "v" * 1000},
    ],
)
def test_labels_are_bounded(make_stack, body, labels) -> None:
    stack = make_stack()
    response = stack.client.post(
        "/v1/audits", headers=stack.headers, json={**body, "labels": labels}
    )
    assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"


@contextmanager
def _uvicorn(app) -> Iterator[int]:
    """The app behind a real uvicorn server on a free port, in a thread."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, port=port, log_config=None, lifespan="off"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    wait_for(lambda: server.started, 30, "uvicorn to start")
    try:
        yield port
    finally:
        server.should_exit = True
        thread.join(10)


def test_an_oversize_upload_is_cut_as_it_streams(make_stack) -> None:
    """200 MB against a 1 MiB limit over a real socket: the server answers 413 and stops
    reading near the limit, so nothing past it is spooled anywhere."""
    stack = make_stack(max_upload_bytes=1024**2)
    key = stack.headers["Authorization"]
    boundary = "memaudit-boundary"
    head = (
        f"POST /v1/datasets HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: {key}\r\n"
        f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
        "Transfer-Encoding: chunked\r\n\r\n"
    ).encode()
    part = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        'filename="big.jsonl"\r\nContent-Type: application/x-ndjson\r\n\r\n'
    ).encode()
    line = b'{"text": "' + b"x" * (64 * 1024 - 13) + b'"}\n'
    chunk = f"{len(line):x}\r\n".encode() + line + b"\r\n"
    sent, answer = 0, b""
    with _uvicorn(stack.client.app) as port, socket.create_connection(("127.0.0.1", port)) as conn:
        conn.sendall(head + f"{len(part):x}\r\n".encode() + part + b"\r\n")
        conn.settimeout(10)
        try:
            while sent < 200 * 1024**2:
                conn.sendall(chunk)
                sent += len(line)
        except OSError:  # the server answered and closed the connection
            pass
        try:
            while data := conn.recv(65536):
                answer += data
        except OSError:
            pass
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    assert b"max_upload_bytes" in answer
    # Past the limit only what the sockets' buffers held was ever sent; nothing was read.
    assert sent < 32 * 1024**2, f"{sent} bytes went out before the server stopped reading"
    assert list(stack.settings.datasets_dir.iterdir()) == []


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_the_active_limit_holds_under_concurrent_submits(
    make_stack, body, backend, request
) -> None:
    urls = {}
    if backend == "postgres":
        urls = {
            "database_url": request.getfixturevalue("postgres_url"),
            "broker_url": request.getfixturevalue("redis_url"),
        }
    stack = make_stack(max_active_audits_per_key=3, **urls)
    warm = stack.client.post("/v1/audits", headers=stack.headers, json=body).json()
    stack.client.post(f"/v1/audits/{warm['id']}/cancel", headers=stack.headers)
    barrier = threading.Barrier(20)

    def submit(_: int) -> int:
        barrier.wait()
        return stack.client.post("/v1/audits", headers=stack.headers, json=body).status_code

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(submit, range(20)))
    assert sorted(codes) == [202] * 3 + [429] * 17, codes
    with stack.db.session() as session:
        active = session.scalar(
            select(func.count()).select_from(Audit).where(Audit.status == "queued")
        )
    assert active == 3
