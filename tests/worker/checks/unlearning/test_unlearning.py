"""`unlearning` on real models: an original that memorized mislabeled digits, a model retrained
without them, and a naive unlearning (fine-tuning on the retain set)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.worker.checks.classifier.builders import unlearning_models
from worker.engine.unlearning import tug_of_war
from worker.local import audit_records

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory):
    return unlearning_models(tmp_path_factory.mktemp("unlearning"))


def _params(models) -> dict:
    return {
        "original_model": f"path:{models.original}",
        "retrained_model": f"path:{models.retrained}",
        "rum_n_per_level": 40,
    }


def _accuracy(net, dataset, split: str) -> float:
    data = np.load(dataset)
    mask = data["split"] == split
    predicted = net(torch.from_numpy(data["x"][mask])).argmax(1).numpy()
    return 100.0 * float(np.mean(predicted == data["y"][mask]))


def test_the_retrained_model_scores_a_perfect_tug_of_war(models) -> None:
    checks = [{"kind": "unlearning", "params": _params(models)}]
    summary = audit_records(models.retrained, models.dataset, checks)["unlearning"]["summary"]
    assert summary["counts"] == {"forget": 130, "retain": 1170, "test": 497}
    assert summary["tug_of_war"] == 1.0 and summary["tug_of_war_mia"] == 1.0


def test_naive_unlearning_against_the_retrained_model(models) -> None:
    checks = [{"kind": "unlearning", "params": _params(models)}]
    summary = audit_records(models.unlearned, models.dataset, checks)["unlearning"]["summary"]
    accuracy = summary["accuracy"]
    with torch.no_grad():
        for name, net in models.nets.items():
            for split in ("forget", "retain", "test"):
                assert accuracy[name][split] == pytest.approx(_accuracy(net, models.dataset, split))
    # The original memorized the wrong labels; the retrained model never saw them.
    assert accuracy["original"]["forget"] > 60 > 20 > accuracy["retrained"]["forget"]
    assert summary["tug_of_war"] == pytest.approx(
        tug_of_war(accuracy["unlearned"], accuracy["retrained"])
    )
    assert 0 < summary["tug_of_war"] < 1
    # The forget set looks more like members to the original than to the retrained model.
    membership = summary["membership"]
    auc = {name: membership[name]["forget_vs_test_auc"] for name in membership}
    assert auc["original"] > auc["unlearned"] >= 0 and auc["original"] > auc["retrained"]
    assert membership["original"]["svc_mia"] >= membership["retrained"]["svc_mia"]
    stratified = summary["stratified"]
    assert stratified["order"] == ["low", "mid", "high"] and stratified["basis"] == "original"
    low, high = stratified["levels"]["low"], stratified["levels"]["high"]
    assert low["score_range"][1] <= high["score_range"][0]
    assert set(low["accuracy"]) == {"unlearned", "original", "retrained"}
