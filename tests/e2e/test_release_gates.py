"""Release gates end to end: a real `mlflow server`, three registered versions of a tiny LM
trained here (v1 the champion; v2 memorizes more of the planted canaries, v3 fewer), and two
policies on them, one gating against the champion record by record, one absolute.
"""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import wait_for
from tests.e2e.conftest import MlflowServer, Served, register, serve, version_tags_of
from worker.demo import DemoArtifacts, build_tokenizer, make_corpus, train_memorizer, write_dataset

pytestmark = pytest.mark.slow
MODEL = "gated-lm"
RELATIVE, ABSOLUTE = "gate-vs-champion", "gate-absolute"
EXTRACTION = {"kind": "extraction", "params": {"prefix_tokens": 10, "suffix_tokens": 16}}


@dataclass(frozen=True)
class Chain:
    dataset: Path
    versions: dict[str, Path]  # v1, v2, v3
    trained: dict[str, int]  # how many canaries each memorized


@pytest.fixture(scope="module")
def chain(tmp_path_factory: pytest.TempPathFactory) -> Chain:
    """Three versions sharing one tokenizer: v1 memorizes 10 canaries, v2 those and 20 more,
    v3 only 3 of v1's; 8 canaries none was trained on."""
    root = tmp_path_factory.mktemp("chain")
    corpus = make_corpus(n_members=40, n_nonmembers=8, seed=3)
    tokenizer = build_tokenizer(corpus.members + corpus.nonmembers)
    trained = {"v1": 10, "v2": 30, "v3": 3}
    versions = {}
    for name, n in trained.items():
        model = train_memorizer(
            corpus.members[:n], tokenizer, seed=0, n_layer=1, n_embd=64, max_steps=1500
        )
        versions[name] = root / name
        model.save_pretrained(versions[name])
        tokenizer.save_pretrained(versions[name])
    dataset = root / "canaries.jsonl"
    write_dataset(dataset, corpus)
    return Chain(dataset, versions, trained)


@pytest.fixture(scope="module")
def memaudit(
    tmp_path_factory: pytest.TempPathFactory, tiny_lm: DemoArtifacts, mlflow_server: MlflowServer
) -> Iterator[Served]:
    with serve(
        tmp_path_factory.mktemp("memaudit"),
        tiny_lm,
        mlflow_tracking_uri=mlflow_server.url,
        registry_poll_seconds=3.0,
    ) as instance:
        yield instance


def _policy(memaudit: Served, body: dict) -> dict:
    response = memaudit.client.post("/v1/policies", headers=memaudit.headers, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def _verdict_of(memaudit: Served, uri: str, policy_id: str, after: str = "") -> dict:
    """The policy's latest audit of the version once its verdict is reached."""

    def reached() -> dict | None:
        listed = memaudit.client.get(
            "/v1/audits", headers=memaudit.headers, params={"model": uri, "limit": 50}
        ).json()["data"]
        mine = [a for a in listed if a["policy_id"] == policy_id and a["id"] != after]
        if not mine:
            return None
        audit = max(mine, key=lambda a: a["created_at"])
        ended = audit["status"] in ("succeeded", "failed", "cancelled")
        return audit if ended and (audit["verdict"] or {}).get("status") != "pending" else None

    return wait_for(reached, 240, f"the verdict of {uri}")


def _tags_when(registry, version: str, expected: dict[str, str]) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The version's tags once they hold `expected`: a policy audit writes `pending` as it
    starts, and a write-back racing another settles within moments (registry_verdicts)."""

    def present() -> dict[str, str] | None:
        tags = version_tags_of(registry, MODEL, version)
        return tags if all(tags.get(k) == v for k, v in expected.items()) else None

    return wait_for(present, 90, f"tags {expected} on {MODEL}/{version}")


def test_the_gate_fails_more_memorization_passes_less_and_keeps_each_policys_verdict(
    memaudit: Served, mlflow_server: MlflowServer, registry, chain: Chain
) -> None:
    v1 = register(chain.versions["v1"], MODEL)
    registry.set_registered_model_alias(MODEL, "champion", v1)
    dataset = shutil.copy(chain.dataset, memaudit.data_root / "gated-canaries.jsonl")
    common = {
        "source": "mlflow",
        "model_pattern": "gated-*",
        "dataset": {"uri": f"path:{dataset}"},
        "checks": [EXTRACTION],
    }
    relative = _policy(
        memaudit,
        {
            **common,
            "name": RELATIVE,
            "baseline": "champion",
            "thresholds": [
                {
                    "metric": "extraction.greedy_extraction_rate",
                    "greater_is_better": False,
                    "min_absolute_change": 0.02,
                }
            ],
        },
    )
    absolute = _policy(
        memaudit,
        {
            **common,
            "name": ABSOLUTE,
            "thresholds": [
                {"metric": "extraction.greedy_extraction_rate", "op": "<=", "value": 0.9}
            ],
        },
    )
    v2 = register(chain.versions["v2"], MODEL)
    v3 = register(chain.versions["v3"], MODEL)
    uri = {v: f"mlflow:models:/{MODEL}/{v}" for v in (v1, v2, v3)}

    worse = _verdict_of(memaudit, uri[v2], relative["id"])
    assert worse["baseline"]["ref"] == "champion" and worse["baseline"]["version"] == v1
    comparison = worse["verdict"]["comparisons"][0]
    assert worse["verdict"]["status"] == "fail", worse["verdict"]
    assert comparison["method"] == "mcnemar" and comparison["p_value"] < 0.001
    assert comparison["newly"] >= 15 and comparison["value"] > comparison["baseline_value"]
    assert f"on champion v{v1}" in comparison["explanation"]
    assert comparison["explanation"].endswith("worse beyond noise, fail")

    better = _verdict_of(memaudit, uri[v3], relative["id"])
    assert better["verdict"]["status"] == "pass", better["verdict"]
    assert better["verdict"]["comparisons"][0]["high"] < 0  # fewer records extracted, surely
    assert better["verdict"]["promotion"] == "allowed"

    # The champion's first audit is its own baseline: compared with nothing, it judges nothing.
    champion = _verdict_of(memaudit, uri[v1], relative["id"])
    assert champion["verdict"]["status"] == "baseline", champion["verdict"]
    assert champion["verdict"]["comparisons"][0]["status"] == "not_compared"

    # Each policy keeps its own tag; the aggregate holds the worst, once both have ended.
    for version in (v2, v3):
        _verdict_of(memaudit, uri[version], absolute["id"])
    tags = _tags_when(
        registry,
        v2,
        {
            f"memaudit.{RELATIVE}.verdict": "fail",
            f"memaudit.{ABSOLUTE}.verdict": "pass",
            "memaudit.verdict": "fail",
            "memaudit.promotion": "blocked",
        },
    )
    assert "McNemar" in tags[f"memaudit.{RELATIVE}.explanation"]
    _tags_when(
        registry,
        v3,
        {
            f"memaudit.{RELATIVE}.verdict": "pass",
            f"memaudit.{ABSOLUTE}.verdict": "pass",
            "memaudit.verdict": "pass",
            "memaudit.promotion": "allowed",
        },
    )

    # The champion audited again compares with its earlier audit: the same records, no change.
    # It does not fail; nor does it pass at a 2-point margin: with no record changed among 48,
    # the score interval of the difference is still about +-6 points.
    again = memaudit.client.post(
        f"/v1/policies/{relative['id']}/reaudit",
        headers=memaudit.headers,
        json={"model_uri": uri[v1], "key": "champion-again"},
    )
    assert again.status_code == 201, again.text
    reaudited = _verdict_of(memaudit, uri[v1], relative["id"])
    assert reaudited["id"] == again.json()["id"]
    assert reaudited["baseline"]["audit_id"] == champion["id"]
    assert reaudited["verdict"]["status"] == "inconclusive", reaudited["verdict"]
    assert reaudited["verdict"]["comparisons"][0]["newly"] == 0
    assert reaudited["verdict"]["comparisons"][0]["no_longer"] == 0
    # The version's tag for that policy is now this re-audit's: never `fail`.
    _tags_when(registry, v1, {f"memaudit.{RELATIVE}.verdict": "inconclusive"})
