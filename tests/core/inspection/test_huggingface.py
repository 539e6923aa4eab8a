"""The Hub: a signed `repo.content` update audits that revision, read from the local cache."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from core.inspection.errors import ModelError
from core.inspection.hf_models import check_revision, parse_uri, snapshot
from tests.conftest import wait_for
from tests.flows import wait_final

SHA = "0123456789abcdef0123456789abcdef01234567"
HF_SECRET = "hub-secret"


def _cache_with(model_dir: Path, cache: Path, repo: str) -> Path:
    """The Hub cache layout (`models--org--name/snapshots/<sha>/`), as a download leaves it."""
    folder = cache / f"models--{repo.replace('/', '--')}" / "snapshots" / SHA
    shutil.copytree(model_dir, folder)
    (folder.parent.parent / "refs").mkdir()
    (folder.parent.parent / "refs" / "main").write_text(SHA)
    return folder


def test_uris_name_a_revision() -> None:
    assert parse_uri(f"hf:org/lm@{SHA}") == ("org/lm", SHA)
    for bad in ["hf:org/lm", "hf:@abc", "hf:../../etc@abc", "path:/x", "hf:org--b/x@main"]:
        with pytest.raises(ModelError):
            parse_uri(bad)


@pytest.mark.parametrize(
    "revision", [SHA, "main", "v1.0", "refs/pr/12", "release/2026-12", "feature_x-y"]
)
def test_a_revision_is_a_commit_or_a_ref_name(revision) -> None:
    assert parse_uri(f"hf:org/lm@{revision}") == ("org/lm", revision)


@pytest.mark.parametrize(
    "revision",
    ["/dev/zero", "/tmp/outside-model", "../../etc", "main/../../x", ".hidden", "a//b",
     "main.lock", "a b", "x\\y", "refs/", "tag.", "a@{1}", "@", "x" * 300, "v1:2", "a\x00b"],
)  # fmt: skip
def test_a_revision_that_could_be_a_path_is_refused_before_any_file_is_opened(revision) -> None:
    with pytest.raises(ModelError, match="is neither a commit hash"):
        check_revision(revision)
    with pytest.raises(ModelError):
        parse_uri(f"hf:org/lm@{revision}")


def test_a_fifo_for_a_ref_in_the_cache_is_never_opened(tmp_path, tiny_lm) -> None:
    """A submitter who can write the cache plants refs/main as a FIFO: refused, not blocked."""
    _cache_with(tiny_lm.model_dir, tmp_path, "org/lm")
    ref = tmp_path / "models--org--lm" / "refs" / "main"
    ref.unlink()
    os.mkfifo(ref)
    with pytest.raises(ModelError, match="not available in the local Hugging Face cache"):
        snapshot("hf:org/lm@main", download=False, cache_dir=str(tmp_path))
    ref.unlink()
    ref.write_text(SHA)
    assert snapshot("hf:org/lm@main", download=False, cache_dir=str(tmp_path)).name == SHA


def test_offline_a_revision_must_be_cached(tmp_path, tiny_lm) -> None:
    _cache_with(tiny_lm.model_dir, tmp_path, "org/lm")
    found = snapshot(f"hf:org/lm@{SHA}", download=False, cache_dir=str(tmp_path))
    assert (found / "config.json").is_file()
    with pytest.raises(ModelError, match="not available in the local Hugging Face cache"):
        snapshot(f"hf:org/other@{SHA}", download=False, cache_dir=str(tmp_path))


@pytest.mark.slow
def test_a_hub_update_audits_the_new_revision(make_stack, tiny_lm, tmp_path) -> None:
    cache = tmp_path / "hub"
    _cache_with(tiny_lm.model_dir, cache, "acme/support-lm")
    stack = make_stack(hf_webhook_secret=HF_SECRET, hf_cache_dir=str(cache))
    stack.start_worker()
    policy = {
        "name": "acme-hub",
        "source": "huggingface",
        "model_pattern": "acme/*",
        "dataset": {"uri": f"path:{tiny_lm.dataset_path}"},
        "checks": [{"kind": "loss", "params": {}}],
        "thresholds": [{"metric": "loss.mean_loss", "op": ">=", "value": 0.5}],
    }
    assert stack.client.post("/v1/policies", headers=stack.headers, json=policy).status_code == 201
    event = {
        "event": {"action": "update", "scope": "repo.content"},
        "repo": {"type": "model", "name": "acme/support-lm", "headSha": SHA},
        "webhook": {"id": "w1", "version": 3},
    }
    response = stack.client.post(
        "/v1/hooks/huggingface",
        content=json.dumps(event),
        headers={"X-Webhook-Secret": HF_SECRET, "Content-Type": "application/json"},
    )
    assert response.status_code == 202, response.text

    def audit() -> dict | None:
        data = stack.client.get(
            "/v1/audits", headers=stack.headers, params={"family": "hf:acme/support-lm"}
        ).json()["data"]
        return data[0] if data else None

    started = wait_for(audit, 60, "the Hub update's audit")
    assert started["model_uri"] == f"hf:acme/support-lm@{SHA}"
    assert started["model_version"] == SHA
    final = wait_final(stack.client, stack.headers, started["id"])
    assert final["status"] == "succeeded", final
    assert final["verdict"]["status"] in ("pass", "fail")
    assert final["verdict"]["results"][0]["value"] == pytest.approx(
        final["summary"]["loss"]["mean_sample_loss"]
    )
