"""Submitting a finetune check: the base (the reference model) must tokenize as the model does,
read from both directories' tokenizer files before anything is queued."""

from __future__ import annotations

import shutil

import pytest

from tests.app.api.test_audits import _bad
from worker.demo import build_tokenizer


@pytest.fixture
def stack(make_stack):
    return make_stack()


def test_a_base_with_another_tokenizer_is_a_422(stack, body, tiny_lm) -> None:
    other = tiny_lm.model_dir.parent / "other-tokenizer-base"
    shutil.copytree(tiny_lm.model_dir, other, dirs_exist_ok=True)
    build_tokenizer(["nothing like the canaries 42"] * 4, vocab_size=300).save_pretrained(other)
    body["checks"] = [{"kind": "finetune", "params": {}}]
    body["reference_model"] = {"uri": f"path:{other}"}
    error = _bad(stack, 422, "invalid_params", headers=stack.headers, json=body)
    assert "tokenizes differently" in error["message"] and "tokenizer.json" not in error["message"]


def test_a_base_with_the_same_tokenizer_is_accepted(stack, body, tiny_lm) -> None:
    same = tiny_lm.model_dir.parent / "same-tokenizer-base"
    shutil.copytree(tiny_lm.model_dir, same, dirs_exist_ok=True)
    body["checks"] = [{"kind": "finetune", "params": {}}]
    body["reference_model"] = {"uri": f"path:{same}"}
    response = stack.client.post("/v1/audits", headers=stack.headers, json=body)
    assert response.status_code == 202, response.text


def test_finetune_needs_a_reference_model(stack, body) -> None:
    body["checks"] = [{"kind": "finetune", "params": {}}]
    error = _bad(stack, 422, "invalid_params", headers=stack.headers, json=body)
    assert "reference_model" in error["message"]
