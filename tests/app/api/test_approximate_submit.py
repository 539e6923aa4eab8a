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
