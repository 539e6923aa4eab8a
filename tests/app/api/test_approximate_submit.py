"""The `approximate` kind's params are refused at submit with a 422 that names the field,
before any audit, shard or message exists."""

from __future__ import annotations

import pytest

from tests.app.api.test_audits import _bad


@pytest.fixture
def stack(make_stack):
    return make_stack()


@pytest.mark.parametrize(
    ("params", "loc"),
    [
        ({"thresholds": {"bleu": 1.5}}, ["checks", 0, "params", "thresholds", "bleu"]),
        (
            {"thresholds": {"bleu": None, "rouge_l": None, "edit_similarity": None}},
            ["checks", 0, "params", "thresholds"],
        ),
        ({"samples": 0}, ["checks", 0, "params", "samples"]),
        ({"schemes": [{"top_p": 0}]}, ["checks", 0, "params", "schemes", 0, "top_p"]),
    ],
)
def test_bad_params_are_a_422(stack, body, params: dict, loc: list) -> None:
    body["checks"] = [{"kind": "approximate", "params": params}]
    error = _bad(stack, 422, "invalid_params", headers=stack.headers, json=body)
    assert error["detail"][0]["loc"] == loc


def test_good_params_are_accepted_with_their_defaults(stack, body) -> None:
    body["checks"] = [{"kind": "approximate", "params": {"prefix_tokens": 10}}]
    response = stack.client.post("/v1/audits", headers=stack.headers, json=body)
    assert response.status_code == 202, response.text
    params = response.json()["checks"][0]["params"]
    assert params["thresholds"] == {
        "bleu": 0.75,
        "rouge_l": 0.75,
        "edit_similarity": 0.75,
        "lcs_substring_fraction": None,
    }
    assert params["samples"] == 8 and len(params["schemes"]) == 2


def test_unbounded_generation_work_is_a_422_that_states_the_budget(stack, body) -> None:
    """suffix_tokens x samples x schemes: 131,072 x 256 x 8 would be 268 million generated
    tokens per record; refused with the budget, the product and what to lower."""
    schemes = [{"top_k": k} for k in (1, 5, 10, 20, 40, 80, 160, 320)]
    params = {"suffix_tokens": 131_072, "samples": 256, "schemes": schemes}
    body["checks"] = [{"kind": "approximate", "params": params}]
    error = _bad(stack, 422, "invalid_params", headers=stack.headers, json=body)
    assert error["detail"][0]["loc"] == ["checks", 0, "params"]
    message = error["detail"][0]["msg"]
    assert "131,072 x 2,048 = 268,435,456" in message and "262,144" in message
    body["checks"] = [{"kind": "approximate", "params": {"suffix_tokens": 131_072, "samples": 1}}]
    response = stack.client.post("/v1/audits", headers=stack.headers, json=body)
    assert response.status_code == 202, response.text  # greedy + one sample: 262,144
