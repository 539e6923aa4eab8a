"""How fast a signed MLflow webhook gets its 202: verify, record, queue.

    .venv/bin/python -m bench.hook_latency

200 deliveries through the real app (SQLite + the embedded broker), signed with MLflow's own
signing function; the baseline is `/healthz` through the same app in the same run.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
import uuid

from fastapi.testclient import TestClient
from mlflow.webhooks.delivery import _generate_hmac_signature

from app.main import create_app
from app.migrate import upgrade
from bench.percentiles import percentile
from core.config import Settings

SECRET = "bench-secret"
N = 200


def main() -> None:
    settings = Settings(
        data_dir=tempfile.mkdtemp(prefix="memaudit-hooks-"), mlflow_webhook_secret=SECRET
    )
    settings.ensure_dirs()
    upgrade(settings.database_url)
    client = TestClient(create_app(settings))
    body = json.dumps(
        {"entity": "model_version", "action": "created", "data": {"name": "m", "version": "1"}}
    )
    hooks, health = [], []
    for _ in range(N):
        delivery, timestamp = str(uuid.uuid4()), str(int(time.time()))
        headers = {
            "X-MLflow-Delivery-Id": delivery,
            "X-MLflow-Timestamp": timestamp,
            "X-MLflow-Signature": _generate_hmac_signature(SECRET, delivery, timestamp, body),
        }
        start = time.perf_counter()
        assert client.post("/v1/hooks/mlflow", content=body, headers=headers).status_code == 202
        hooks.append(time.perf_counter() - start)
        start = time.perf_counter()
        assert client.get("/healthz").status_code == 200
        health.append(time.perf_counter() - start)
    hook_median, hook_p95 = statistics.median(hooks), percentile(hooks, 95)
    health_median = statistics.median(health)
    print(f"202 for a signed delivery: median {hook_median * 1000:.1f} ms,", end=" ")
    print(f"p95 {hook_p95 * 1000:.1f} ms")
    print(f"/healthz baseline: median {health_median * 1000:.1f} ms")
    print(f"ratio (median): {hook_median / health_median:.1f}x")


if __name__ == "__main__":
    main()
