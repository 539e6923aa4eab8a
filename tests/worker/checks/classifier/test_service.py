"""Classifier audits through the service: the API, a real worker process, finalize."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.inspection.errors import ModelError
from core.inspection.models import TORCHSCRIPT_KEY, resolve_model
from tests.flows import all_samples, session_cookie, wait_final
from tests.worker.checks.classifier.builders import flagged_auroc, noisy_digits

pytestmark = pytest.mark.slow


def _submit(stack, model_dir, dataset, checks) -> object:
    return stack.client.post(
        "/v1/audits",
        headers=stack.headers,
        json={
            "model": {"uri": f"path:{model_dir}"},
            "dataset": {"uri": f"path:{dataset}"},
            "checks": checks,
        },
    )


def test_proxies_capacity_and_diversity_of_a_noisy_label_mlp(make_stack, tmp_path) -> None:
    digits = noisy_digits(tmp_path)
    stack = make_stack(
        model_roots=str(digits.model_dir.parent),
        data_roots=str(digits.dataset.parent),
        shard_size=600,  # three shards: each fine-tunes the same seeded held-out copy
        batch_size=64,
    )
    worker = stack.start_worker()
    checks = [
        {"kind": "proxies", "params": {}},
        {"kind": "capacity", "params": {}},
        {"kind": "diversity", "params": {"n_bins": 20}},
    ]
    response = _submit(stack, digits.model_dir, digits.dataset, checks)
    assert response.status_code == 202, response.text
    audit = wait_final(stack.client, stack.headers, response.json()["id"], timeout=240)
    assert audit["status"] == "succeeded", (audit, worker.tail())
    summary = audit["summary"]

    rows = [r for r in all_samples(stack.client, stack.headers, audit["id"], "proxies")]
    scored = [r for r in rows if not r["values"].get("skipped")]
    assert len(rows) == 1797 and len(scored) == 1300
    flagged = [r["sample_id"] in digits.flipped_ids for r in scored]
    assert flagged_auroc([r["values"]["mem_score"]["loss"] for r in scored], flagged) >= 0.9
    kl = [r["values"]["mem_score"]["heldout_kl"] for r in scored]
    assert flagged_auroc(kl, flagged) > 0.5
    assert summary["proxies"]["model"]["heldout_kl"]["epochs_run"] >= 1
    # Most memorized first: the records table is ordered by the proxy's mem_score.
    first = stack.client.get(
        f"/v1/audits/{audit['id']}/samples",
        headers=stack.headers,
        params={"check": "proxies", "order_by": "score", "desc": True, "limit": 20},
    ).json()["data"]
    assert sum(r["sample_id"] in digits.flipped_ids for r in first) >= 18

    capacity = summary["capacity"]
    assert capacity["model"]["width"]["width_flag"] is False
    assert capacity["separation_bound"] > 0
    layers = summary["diversity"]["layers"]
    assert list(layers) == ["2"] and layers["2"]["n_neurons"] == 128
    assert summary["diversity"]["readings"]["H1"].startswith("heuristic")
    assert audit["provenance"]["timings"]["n_shards"] == 3
    # The report page and the records table serve a classifier audit (its charts: not yet).
    session_cookie(stack.client, stack.headers["Authorization"].split()[1])
    page = stack.client.get(f"/audits/{audit['id']}")
    assert page.status_code == 200 and "proxies" in page.text


def test_bad_classifier_requests_are_refused(make_stack, tmp_path) -> None:
    digits = noisy_digits(tmp_path)
    stack = make_stack(
        model_roots=str(digits.model_dir.parent), data_roots=str(digits.dataset.parent)
    )
    mixed = _submit(
        stack, digits.model_dir, digits.dataset, [{"kind": "proxies"}, {"kind": "loss"}]
    )
    assert mixed.status_code == 422
    assert mixed.json()["error"]["code"] in {"incompatible_checks", "unsupported_model_kind"}
    unknown = _submit(
        stack, digits.model_dir, digits.dataset, [{"kind": "proxies", "params": {"proxies": ["x"]}}]
    )
    assert unknown.status_code == 422 and "unknown proxies" in unknown.text
    unlabelled = tmp_path / "data" / "unlabelled.npz"
    np.savez(unlabelled, x=np.zeros((4, 64), dtype=np.float32))
    missing = _submit(stack, digits.model_dir, unlabelled, [{"kind": "proxies"}])
    assert missing.status_code == 422 and "label" in missing.text
    objects = tmp_path / "data" / "objects.npz"
    np.savez(objects, x=np.array([{"a": 1}, None], dtype=object))
    refused = _submit(stack, digits.model_dir, objects, [{"kind": "diversity"}])
    assert refused.status_code == 422 and "object arrays are refused" in refused.text


def test_torchscript_is_refused_unless_allowed(tmp_path) -> None:
    import torch

    model_dir = tmp_path / "scripted"
    model_dir.mkdir()
    torch.jit.script(torch.nn.Linear(4, 2)).save(str(model_dir / "model.torchscript"))
    (model_dir / "config.json").write_text(json.dumps({TORCHSCRIPT_KEY: {"n_classes": 2}}))
    with pytest.raises(ModelError, match="MEMAUDIT_ALLOW_TORCHSCRIPT=true"):
        resolve_model(f"path:{model_dir}", [tmp_path])
    spec = resolve_model(f"path:{model_dir}", [tmp_path], allow_torchscript=True)
    assert (spec.kind, spec.format) == ("classifier", "torchscript")

    from worker.loaders.classifiers import load_classifier

    loaded = load_classifier(spec)
    logits = loaded.logits(loaded.module, loaded.batch([[0.0, 1.0, 2.0, 3.0]]))
    assert tuple(logits.shape) == (1, 2)


def test_an_lm_audit_takes_capacity_and_diversity_alongside(make_stack, tiny_lm) -> None:
    stack = make_stack(shard_size=20)
    worker = stack.start_worker()
    checks = [
        {"kind": "loss", "params": {}},
        {"kind": "capacity", "params": {}},
        {"kind": "diversity", "params": {"n_bins": 10, "layers": ["hidden_states.2"]}},
    ]
    response = _submit(stack, tiny_lm.model_dir, tiny_lm.dataset_path, checks)
    assert response.status_code == 202, response.text
    audit = wait_final(stack.client, stack.headers, response.json()["id"])
    assert audit["status"] == "succeeded", (audit, worker.tail())
    n = tiny_lm.n_members + tiny_lm.n_nonmembers
    for check in ("loss", "capacity", "diversity"):
        assert len(all_samples(stack.client, stack.headers, audit["id"], check)) == n
    attention = audit["summary"]["capacity"]["model"]["attention"]
    assert attention["associations"] == n and attention["phi"] > 0
    layer = audit["summary"]["diversity"]["layers"]["hidden_states.2"]
    assert layer["mi"]["n_pairs"] == layer["n_neurons"] * (layer["n_neurons"] - 1) // 2
    # Canaries still separate on loss with the other checks in the same passes.
    by_member = audit["summary"]["loss"]["by_member"]
    assert by_member["members"]["mean_sample_loss"] < by_member["nonmembers"]["mean_sample_loss"]


def test_unlearning_params_name_models_inside_the_roots(make_stack, tmp_path) -> None:
    digits = noisy_digits(tmp_path)
    stack = make_stack(
        model_roots=str(digits.model_dir.parent), data_roots=str(digits.dataset.parent)
    )
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    checks = [{"kind": "unlearning", "params": {"retrained_model": f"path:{outside}"}}]
    refused = _submit(stack, digits.model_dir, digits.dataset, checks)
    assert refused.status_code == 422, refused.text
    assert refused.json()["error"]["code"] == "invalid_model"
    assert "checks[0].params" in refused.json()["error"]["message"]
