"""POST /v1/splits with a real worker: the blind baseline before and after matching, the
labelled dataset registered for the team and auditable, other teams kept out, failures said."""

from __future__ import annotations

import json

import pytest

from app.keys import create_key
from app.teams import create_team
from core.inspection.datasets import uploaded_dataset_path
from core.models import Dataset, Split
from tests.conftest import wait_for, write_jsonl
from tests.flows import FINAL, upload
from tests.worker.engine.test_split_matching import _texts


@pytest.fixture
def teams(make_stack, tmp_path):
    """Teams a and b, each with a submit key and its own data folder, and a's two sets."""
    data = tmp_path / "data-roots"
    stack = make_stack(data_roots=str(data))
    headers = {}
    for name in ("a", "b"):
        (data / name).mkdir(parents=True)
        with stack.db.session() as session:
            team = create_team(session, stack.settings, name, data_folders=[str(data / name)])
            headers[name] = {
                "Authorization": f"Bearer {create_key(session, name, 'submit', team.id)}"
            }
    members = _texts(150, 1, share_a=0.7, words=(15, 40))
    nonmembers = _texts(150, 2, share_a=0.3, words=(8, 30))
    write_jsonl(
        data / "a" / "members.jsonl", [{"id": f"m{i}", "text": t} for i, t in enumerate(members)]
    )
    write_jsonl(data / "a" / "nonmembers.jsonl", [{"text": t} for t in nonmembers])
    return stack, data, headers


def _finished(stack, split_id: str, headers: dict) -> dict:
    def final() -> dict | None:
        found = stack.client.get(f"/v1/splits/{split_id}", headers=headers).json()
        return found if found["status"] in FINAL else None

    return wait_for(final, 180, f"split {split_id}", interval=0.5)  # type: ignore[return-value]


def test_a_matched_split_is_measured_and_registered_for_the_team(teams, tiny_lm) -> None:
    stack, data, headers = teams
    stack.start_worker()
    body = {
        "members": f"path:{data / 'a' / 'members.jsonl'}",
        "nonmembers": f"path:{data / 'a' / 'nonmembers.jsonl'}",
        "match": True,
        "seed": 3,
    }
    answer = stack.client.post("/v1/splits", headers=headers["a"], json=body)
    assert answer.status_code == 202, answer.text
    assert answer.json()["status"] == "queued" and answer.json()["dataset_uri"] is None
    split = _finished(stack, answer.json()["id"], headers["a"])
    assert split["status"] == "succeeded", split["error"]
    assert (split["n_members"], split["n_nonmembers"], split["seed"]) == (150, 150, 3)
    assert split["before"]["reading"] == "confounded"
    assert split["before"]["auroc"]["ci95"][0] > 0.5 + split["before"]["method"]["delta"]
    kept = split["matching"]["kept_members"]
    assert split["after"]["reading"] == "no_confound_detected" and kept >= 40
    assert split["after"]["n_members"] == split["after"]["n_nonmembers"] == kept

    # The labelled dataset is the team's, holds the kept records, and can be audited directly.
    dataset_id = split["dataset_uri"].removeprefix("dataset:")
    with stack.db.session() as session:
        row = session.get_one(Dataset, dataset_id)
        assert (row.team_id, row.n_records) == (
            session.get_one(Split, split["id"]).team_id,
            2 * kept,
        )
        assert "member" in row.fields
        path = uploaded_dataset_path(stack.settings.datasets_dir, row.sha256)
    records = [json.loads(line) for line in path.read_text().splitlines()]
    assert sum(r["member"] for r in records) == kept
    assert all(r["id"].startswith("m") for r in records if r["member"])
    audit = stack.client.post(
        "/v1/audits",
        headers=stack.headers,  # an admin: it may name a's dataset; the model is the demo's
        json={
            "model": {"uri": f"path:{tiny_lm.model_dir}"},
            "dataset": {"uri": split["dataset_uri"]},
            "checks": [{"kind": "membership", "params": {}}],
        },
    )
    assert audit.status_code == 202, audit.text

    # Team b sees none of it: not the split, not its dataset, not a's files.
    for split_id in (split["id"], "f" * 32):
        theirs = stack.client.get(f"/v1/splits/{split_id}", headers=headers["b"])
        assert theirs.status_code == 404 and theirs.json()["error"]["code"] == "not_found"
    borrowed = stack.client.post(
        "/v1/splits",
        headers=headers["b"],
        json={**body, "members": split["dataset_uri"], "nonmembers": split["dataset_uri"]},
    )
    assert borrowed.status_code == 422 and borrowed.json()["error"]["code"] == "unknown_dataset"
    outside = stack.client.post("/v1/splits", headers=headers["b"], json=body)
    assert outside.status_code == 422 and "outside the folders you may read" in outside.text


def test_an_unmatched_split_of_an_upload_keeps_both_sets(teams) -> None:
    stack, data, headers = teams
    stack.start_worker()
    uploaded = upload(stack.client, headers["a"], data / "a" / "members.jsonl")
    body = {"members": uploaded["uri"], "nonmembers": f"path:{data / 'a' / 'nonmembers.jsonl'}"}
    answer = stack.client.post("/v1/splits", headers=headers["a"], json=body)
    assert answer.status_code == 202, answer.text
    split = _finished(stack, answer.json()["id"], headers["a"])
    assert split["status"] == "succeeded", split["error"]
    assert split["before"]["reading"] == "confounded"
    assert split["after"] is None and split["matching"] is None
    with stack.db.session() as session:
        dataset = session.get_one(Dataset, split["dataset_uri"].removeprefix("dataset:"))
        assert dataset.n_records == 300


def test_a_bad_record_fails_the_split_with_its_line_and_writes_nothing(teams) -> None:
    stack, data, headers = teams
    stack.start_worker()
    # Only the first record of a file named by path is read at submit; the worker reads all.
    write_jsonl(data / "a" / "broken.jsonl", [{"text": "fine words here"}, {"text": 3}])
    body = {
        "members": f"path:{data / 'a' / 'members.jsonl'}",
        "nonmembers": f"path:{data / 'a' / 'broken.jsonl'}",
    }
    answer = stack.client.post("/v1/splits", headers=headers["a"], json=body)
    assert answer.status_code == 202, answer.text
    split = _finished(stack, answer.json()["id"], headers["a"])
    assert split["status"] == "failed" and split["dataset_uri"] is None
    assert (
        "nonmembers" in split["error"] and "line 2: field 'text' must be a string" in split["error"]
    )
    with stack.db.session() as session:
        assert session.query(Dataset).count() == 0


def test_submits_are_checked_before_anything_is_written(teams) -> None:
    stack, data, headers = teams
    members = f"path:{data / 'a' / 'members.jsonl'}"
    write_jsonl(data / "a" / "labels.jsonl", [{"label": 1}, {"label": 0}])
    write_jsonl(data / "a" / "one.jsonl", [{"text": "alone"}])
    for nonmembers, status, code in [
        (f"path:{data / 'a' / 'labels.jsonl'}", 422, "missing_dataset_fields"),
        (f"path:{data / 'a' / 'one.jsonl'}", 422, "too_few_records"),
        ("s3://bucket/x.jsonl", 422, "invalid_dataset"),
    ]:
        refused = stack.client.post(
            "/v1/splits", headers=headers["a"], json={"members": members, "nonmembers": nonmembers}
        )
        assert refused.status_code == status and refused.json()["error"]["code"] == code
    assert (
        stack.client.post(
            "/v1/splits", json={"members": members, "nonmembers": members}
        ).status_code
        == 401
    )
    with stack.db.session() as session:
        assert session.query(Split).count() == 0
