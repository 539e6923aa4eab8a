"""The whole OpenAPI surface under generated requests, authenticated, on PostgreSQL and Redis:
no 5xx, and every response matches what the document promises (status, type and schema)."""

from __future__ import annotations

import hypothesis
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given
from schemathesis.checks import not_a_server_error
from schemathesis.generation import GenerationMode
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.flows import submit, upload

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]

MIN_REQUESTS = 2000
EXAMPLES_PER_OPERATION = 150  # simple operations run out of distinct inputs sooner
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _fuzz(operation, headers: dict[str, str], known: dict[str, str], sent: list[int]) -> None:
    """Positive (valid by the schema) and negative (invalid) requests for one operation, and,
    where the path names a resource, positive ones at a resource that exists."""
    strategy = operation.as_strategy(generation_mode=GenerationMode.POSITIVE) | (
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE)
    )
    names = {p.name for p in operation.path_parameters}
    if names and names <= set(known):
        strategy |= operation.as_strategy(
            generation_mode=GenerationMode.POSITIVE,
            path_parameters={name: known[name] for name in names - {"sample_index"}},
        )

    @given(case=strategy)
    @hypothesis.settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        derandomize=True,  # the same requests on every run: a failure reproduces
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=list(HealthCheck),
    )
    def run(case) -> None:
        case.headers = {**(case.headers or {}), **headers}  # authenticated, always
        response = case.call()
        sent.append(response.status_code)
        case.validate_response(response, checks=CHECKS)

    run()


def test_generated_requests_find_no_server_error_or_schema_violation(
    make_stack, postgres_url, redis_url, tiny_lm
) -> None:
    # Configured as in production, so the hooks' signature checks are what the requests meet.
    stack = make_stack(
        database_url=postgres_url,
        broker_url=redis_url,
        mlflow_webhook_secret="fuzz-mlflow-secret-0123456789",
        hf_webhook_secret="fuzz-hub-secret-0123456789",
    )
    dataset = upload(stack.client, stack.headers, tiny_lm.dataset_path)  # real things to find
    audit = submit(stack.client, stack.headers, tiny_lm.model_dir, dataset["uri"])
    policy = stack.client.post(
        "/v1/policies",
        headers=stack.headers,
        json={
            "name": "fuzz",
            "source": "mlflow",
            "model_pattern": "*",
            "dataset": {"uri": dataset["uri"]},
            "checks": [{"kind": "loss"}],
        },
    ).json()
    known = {"audit_id": audit["id"], "policy_id": policy["id"], "sample_index": "0"}
    schema = schemathesis.openapi.from_asgi(
        "/openapi.json", stack.client.app, headers=stack.headers
    )
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 20
    per_operation: dict[str, int] = {}
    statuses: list[int] = []
    for operation in operations:
        before = len(statuses)
        _fuzz(operation, stack.headers, known, statuses)
        per_operation[f"{operation.method.upper()} {operation.path}"] = len(statuses) - before

    by_status = {code: statuses.count(code) for code in sorted(set(statuses))}
    print(f"schemathesis: {len(statuses)} requests, by status {by_status}, {per_operation}")
    assert len(statuses) >= MIN_REQUESTS, per_operation
    assert max(statuses) < 500
