"""PAC and the neighbourhood attack in the membership check, on the demo's canary LM (a tiny
GPT-2 trained in the test) with a tiny BERT trained on other canaries as the neighbour model:
their AUROCs beside loss's, their values equal to each record scored alone, and when they run."""

from __future__ import annotations

import pytest

from core.check_kinds import SubmitContext
from tests.worker.masked_lm import build_masked_lm
from worker.checks.lm.compute import plan_membership
from worker.checks.lm.kinds import MembershipParams
from worker.demo import make_corpus
from worker.engine.attacks_pac import augmentations, pac_score
from worker.engine.neighbourhood import neighbours
from worker.engine.scoring import ScoringRequest, score_sequences
from worker.loaders.masked_lm import cached_masked_lm
from worker.loaders.models import LoadedModel
from worker.local import audit_texts, load_local, local_spec

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def canary_lm(tiny_lm) -> LoadedModel:
    return load_local(tiny_lm.model_dir)


@pytest.fixture(scope="module")
def bert_dir(tmp_path_factory):
    """Trained on canaries the audited records are not: the swaps know the template only."""
    root = tmp_path_factory.mktemp("neighbour") / "models"
    return build_masked_lm(root / "canary-bert", make_corpus(seed=11).members)


def _records(tiny_lm) -> list[dict]:
    corpus = make_corpus(tiny_lm.n_members, tiny_lm.n_nonmembers)
    return [{"text": t, "member": True} for t in corpus.members] + [
        {"text": t, "member": False} for t in corpus.nonmembers
    ]


def _loss(lm: LoadedModel, text: str) -> float:
    (stats,) = score_sequences(
        lm.model, [ScoringRequest(lm.special_prefix + lm.encode(text))], lm.device
    )
    return -stats.mean_logprob


def _logprobs(lm: LoadedModel, text: str):
    (stats,) = score_sequences(
        lm.model, [ScoringRequest(lm.special_prefix + lm.encode(text))], lm.device
    )
    return stats.logprobs


def test_pac_and_neighbourhood_reported_beside_loss(tiny_lm, canary_lm, bert_dir) -> None:
    records = _records(tiny_lm)
    params = {
        "scores": ["loss", "pac", "neighbourhood"],
        "neighbour_model": f"path:{bert_dir}",
        "neighbours": 8,
        "bootstrap": 200,
        "seed": 3,
    }
    result = audit_texts(canary_lm, records, [{"kind": "membership", "params": params}])
    summary = result["membership"]["summary"]
    scores = summary["scores"]
    print(f"\ncanary LM, {tiny_lm.n_members} members vs {tiny_lm.n_nonmembers} non-members")
    for name in ("loss", "pac", "neighbourhood"):
        auroc = scores[name]["auroc"]
        print(f"  {name:14s} AUROC {auroc['value']:.3f}  CI95 {auroc['ci95']}")
        assert auroc["ci95"][0] <= auroc["value"] <= auroc["ci95"][1]
        assert "tpr_at_0.01_fpr" in scores[name] and "reading" in scores[name]
    assert "blind_baseline" in summary

    # Each record's values equal the record scored alone, outside the batched pass.
    masked = cached_masked_lm(local_spec(bert_dir))
    for sample, record in list(zip(result["membership"]["samples"], records, strict=True))[::12]:
        text = record["text"]
        augmented = [_logprobs(canary_lm, a) for a in augmentations(text, 3)]
        expected_pac = pac_score(_logprobs(canary_lm, text), augmented)
        assert sample["pac"] == pytest.approx(expected_pac, abs=1e-5)
        swaps = neighbours(text, masked.model, masked.tokenizer, n=8, seed=3)
        own = _loss(canary_lm, text)
        expected = sum(_loss(canary_lm, s) for s in swaps) / len(swaps) - own
        assert sample["n_neighbours"] == 8
        assert sample["neighbourhood"] == pytest.approx(expected, abs=1e-5)

    # The same seed gives the same scores (to float32 batching noise: other batch-mates).
    again = audit_texts(canary_lm, records[:4], [{"kind": "membership", "params": params}])
    first = result["membership"]["samples"][:4]
    for one, other in zip(first, again["membership"]["samples"], strict=True):
        assert one["pac"] == pytest.approx(other["pac"], abs=1e-6)
        assert one["neighbourhood"] == pytest.approx(other["neighbourhood"], abs=1e-6)


def test_pac_is_opt_in_and_a_neighbour_model_asks_for_neighbourhood(tiny_lm, canary_lm) -> None:
    context = SubmitContext(has_reference_model=False)
    assert plan_membership(MembershipParams(), context).pac is None
    plan = plan_membership(MembershipParams(scores=["pac"], pac_augmentations=3), context)
    assert plan.pac is not None and plan.pac.n == 3
    assert "neighbourhood" in MembershipParams(neighbour_model="path:/m").wanted(False)
    assert "neighbourhood" not in MembershipParams().wanted(True)
    found = audit_texts(canary_lm, _records(tiny_lm)[:4], [{"kind": "membership"}])
    assert all("pac" not in v and "neighbourhood" not in v for v in found["membership"]["samples"])
