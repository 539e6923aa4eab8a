"""Submitting the membership check's calibration scores: the neighbourhood score's masked LM is
checked at submit (present, a masked LM, beneath the roots), never discovered by a worker."""

from __future__ import annotations

from tests.app.api.test_audits import _bad
from tests.worker.masked_lm import build_masked_lm
from worker.demo import make_corpus


def _membership(body: dict, **params) -> dict:
    body["checks"] = [{"kind": "membership", "params": params}]
    return body


def test_neighbourhood_needs_a_masked_lm_under_the_roots(make_stack, body, tiny_lm, tmp_path):
    stack = make_stack()
    _membership(body, scores=["neighbourhood"])
    error = _bad(stack, 422, "invalid_params", headers=stack.headers, json=body)
    assert "neighbour_model" in error["message"]

    _membership(body, neighbour_model=f"path:{tiny_lm.model_dir}")  # a causal LM
    error = _bad(stack, 422, "invalid_params", headers=stack.headers, json=body)
    assert "causal_lm" in error["message"]

    _membership(body, neighbour_model="hf:bert-base-uncased")
    _bad(stack, 422, "invalid_params", headers=stack.headers, json=body)

    outside = build_masked_lm(tmp_path / "elsewhere" / "bert", make_corpus().members, steps=2)
    _membership(body, neighbour_model=f"path:{outside}")
    error = _bad(stack, 422, "invalid_model", headers=stack.headers, json=body)
    assert "outside the folders you may read" in error["message"]

    inside = tiny_lm.model_dir.parent / "calib-bert"
    build_masked_lm(inside, make_corpus().members, steps=2)
    _membership(body, neighbour_model=f"path:{inside}", scores=["loss", "neighbourhood", "pac"])
    response = stack.client.post("/v1/audits", headers=stack.headers, json=body)
    assert response.status_code == 202, response.text
