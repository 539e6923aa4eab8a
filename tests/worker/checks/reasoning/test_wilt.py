"""`wilt` through the service: scripted players behind a local OpenAI-compatible endpoint, and a
local HF chat model, each rule in its own clean conversation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.flows import all_samples, wait_final
from tests.worker.checks.reasoning.builders import FIXED_GUESS, guessing_chat_model
from tests.worker.checks.reasoning.wilt_agents import stub_chat_server
from worker.engine.wilt_guess import grid_points, parse_guess
from worker.engine.wilt_protocol import INSTRUCTIONS
from worker.engine.wilt_rules import compile_rule

pytestmark = pytest.mark.slow
API_KEY = "stub-endpoint-key"
RULES = ["1", "2", "15", "35", "41", "L10", "lambda x, y, z: x + y + z == 0"]


def _rules_dataset(root: Path, rules: list[str]) -> Path:
    path = root / "wilt.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        "".join(json.dumps({"id": f"r{i}", "rule": r}) + "\n" for i, r in enumerate(rules))
    )
    return path


def _audit(stack, model_uri: str, dataset: Path, params: dict | None = None) -> dict:
    body = {
        "model": {"uri": model_uri},
        "dataset": {"uri": f"path:{dataset}"},
        "checks": [{"kind": "wilt", "params": params or {}}],
    }
    response = stack.client.post("/v1/audits", headers=stack.headers, json=body)
    assert response.status_code == 202, response.text
    return wait_final(stack.client, stack.headers, response.json()["id"], timeout=300)


def _transcript(stack, audit_id: str, index: int) -> list[dict]:
    record = stack.client.get(
        f"/v1/audits/{audit_id}/samples/{index}", headers=stack.headers
    ).json()
    (check,) = record["checks"]
    return check["detail"]["transcript"]


def test_a_prober_behind_an_endpoint_solves_several_rules(make_stack, tmp_path) -> None:
    with stub_chat_server(API_KEY, fail_first=1) as server:
        data = tmp_path / "data"
        dataset = _rules_dataset(data, RULES)
        stack = make_stack(
            data_roots=str(data),
            chat_endpoint_hosts="127.0.0.1,*.example.com",
            chat_endpoint_api_key=API_KEY,
        )
        worker = stack.start_worker()
        audit = _audit(stack, f"openai:prober@{server.url}", dataset)
        assert audit["status"] == "succeeded", (audit, worker.tail())
        summary = audit["summary"]["wilt"]
        rows = {
            r["sample_id"]: r["values"]
            for r in all_samples(stack.client, stack.headers, audit["id"], "wilt")
        }
        # Every rule of its library it pins down; L10 is not in it.
        assert {k for k, v in rows.items() if v["correct"]} == {"r0", "r1", "r2", "r3", "r4", "r6"}
        assert summary["n_correct"] == 6 and summary["accuracy"] == pytest.approx(6 / 7)
        assert summary["by_family"]["custom"] == {"n": 1, "correct": 1, "accuracy": 1.0}
        solved = rows["r1"]
        assert 0 < solved["tests_used"] < 30 and solved["outcome"] == "guessed"
        assert solved["points"] == round(1000 + 100 * (1 - solved["tests_used"] / 30))
        assert summary["total_points"] == sum(v["points"] for v in rows.values())
        assert summary["mean_tests_used"] == pytest.approx(
            sum(v["tests_used"] for v in rows.values()) / 7
        )
        wrong = rows["r5"]
        assert not wrong["correct"] and wrong["points"] == int(400 * wrong["grid_agreement"])

        transcript = _transcript(stack, audit["id"], 1)
        assert transcript[0] == {"role": "system", "content": INSTRUCTIONS.format(max_tests=30)}
        tests = [m for m in transcript if m["content"].startswith("Result for")]
        assert len(tests) == solved["tests_used"]
        assert "Tests remaining: 29." in tests[0]["content"]
        # Each rule ran in a clean conversation, and no request ever showed a hidden rule.
        assert server.requests[0]["temperature"] == 0
        starts = [r for r in server.requests if len(r["messages"]) == 2]
        assert len(starts) == len(RULES) + 1  # one more: the first request got a 503
        assert "x + y + z == 0" not in json.dumps(server.requests)


def test_a_player_that_ignores_the_format_gets_one_mulligan(make_stack, tmp_path) -> None:
    with stub_chat_server(API_KEY) as server:
        data = tmp_path / "data"
        dataset = _rules_dataset(data, ["2"])
        stack = make_stack(
            data_roots=str(data), chat_endpoint_hosts="127.0.0.1", chat_endpoint_api_key=API_KEY
        )
        worker = stack.start_worker()
        audit = _audit(stack, f"openai:sloppy@{server.url}", dataset)
        assert audit["status"] == "succeeded", (audit, worker.tail())
        (row,) = all_samples(stack.client, stack.headers, audit["id"], "wilt")
        assert row["values"]["outcome"] == "aborted" and row["values"]["points"] == 0
        assert row["values"]["turns"] == 2  # the re-prompt, then the abort
        transcript = _transcript(stack, audit["id"], 0)
        assert "wrapped in triple backticks" in transcript[3]["content"]
        assert transcript[-1]["content"].endswith("Aborting: no points for this rule.")
        assert audit["summary"]["wilt"]["outcomes"] == {"aborted": 1}

        bad = _rules_dataset(data / "bad", ["2", "lambda x, y, z: __import__('os')"])
        failed = _audit(stack, f"openai:sloppy@{server.url}", bad)
        assert failed["status"] == "failed"
        assert "line 2" in failed["error"] and "may be called" in failed["error"]


def test_endpoints_need_the_allow_list(make_stack, tmp_path) -> None:
    data = tmp_path / "data"
    dataset = _rules_dataset(data, ["2"])
    stack = make_stack(data_roots=str(data), chat_endpoint_hosts="llm.internal")

    def submit(uri: str, kind: str = "wilt"):
        body = {
            "model": {"uri": uri},
            "dataset": {"uri": f"path:{dataset}"},
            "checks": [{"kind": kind, "params": {}}],
        }
        return stack.client.post("/v1/audits", headers=stack.headers, json=body)

    refused = submit("openai:gpt@http://127.0.0.1:9/v1")
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "invalid_model"
    assert "MEMAUDIT_CHAT_ENDPOINT_HOSTS" in refused.json()["error"]["message"]
    malformed = submit("openai:http://llm.internal/v1")
    assert malformed.status_code == 422 and "openai:<model>@<base URL>" in malformed.text
    other_check = submit("openai:gpt@http://llm.internal/v1", kind="loss")
    assert other_check.status_code == 422
    assert other_check.json()["error"]["code"] == "unsupported_model_kind"
    too_few_turns = stack.client.post(
        "/v1/audits",
        headers=stack.headers,
        json={
            "model": {"uri": "openai:gpt@http://llm.internal/v1"},
            "dataset": {"uri": f"path:{dataset}"},
            "checks": [{"kind": "wilt", "params": {"max_tests": 30, "max_turns": 30}}],
        },
    )
    assert too_few_turns.status_code == 422 and "max_turns" in too_few_turns.text


def test_a_local_chat_model_through_its_chat_template(make_stack, tmp_path) -> None:
    model_dir = guessing_chat_model(tmp_path)
    dataset = _rules_dataset(tmp_path / "data", ["2", "1"])
    stack = make_stack(model_roots=str(model_dir.parent), data_roots=str(dataset.parent))
    worker = stack.start_worker()
    audit = _audit(stack, f"path:{model_dir}", dataset, {"max_new_tokens": 40})
    assert audit["status"] == "succeeded", (audit, worker.tail())
    rows = {
        r["sample_id"]: r["values"]
        for r in all_samples(stack.client, stack.headers, audit["id"], "wilt")
    }
    # It guesses x < y < z at once: right for rule 2 with no tests, wrong for rule 1.
    assert rows["r0"]["correct"] and rows["r0"]["tests_used"] == 0 and rows["r0"]["points"] == 1100
    guess = parse_guess("lambda x, y, z: x < y < z")
    rule_1 = compile_rule("1")
    agreement = sum(guess(*p) == rule_1(*p) for p in grid_points()) / 68_921
    assert not rows["r1"]["correct"]
    assert rows["r1"]["grid_agreement"] == pytest.approx(agreement)
    assert rows["r1"]["points"] == int(400 * agreement)
    transcript = _transcript(stack, audit["id"], 0)
    assert transcript[2] == {"role": "assistant", "content": FIXED_GUESS}
