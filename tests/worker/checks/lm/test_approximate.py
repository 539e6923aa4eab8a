"""The `approximate` kind on the canary model (worker/demo.py), which memorized its members'
secrets: a record whose true suffix differs from the memorized one in one token is
approximately but not verbatim extracted; the samples are fixed by the seed and by nothing
else (not the batch); params are checked at submit."""

from __future__ import annotations

from collections import Counter

import pytest
from pydantic import ValidationError

from core.check_kinds import SubmitContext
from worker.checks.lm.approximate import APPROXIMATE, ApproximateParams
from worker.checks.registry import REGISTRY
from worker.demo import make_corpus, secret_offset
from worker.loaders.models import LoadedModel
from worker.local import audit_texts, load_local

pytestmark = pytest.mark.slow
SUFFIX = 19  # every canary has at least 19 tokens after its " PIN"


@pytest.fixture(scope="module")
def canary_lm(tiny_lm) -> LoadedModel:
    return load_local(tiny_lm.model_dir)


def _prefix_len(lm: LoadedModel, text: str) -> int:
    return len(lm.encode(text[: secret_offset(text)]))


def _one_token_changed(lm: LoadedModel, text: str, prefix: int) -> str:
    """The text with one digit of its card number changed such that its suffix's tokens differ
    from the original's at exactly one position."""
    original = lm.encode(text)[prefix : prefix + SUFFIX]
    for at in range(len(text) - 2, secret_offset(text) + 12, -1):
        if not text[at].isdigit():
            continue
        for digit in "0123456789":
            changed = text[:at] + digit + text[at + 1 :]
            ids = lm.encode(changed)
            if len(ids) < prefix + SUFFIX or ids[:prefix] != lm.encode(text)[:prefix]:
                continue
            new = ids[prefix : prefix + SUFFIX]
            if sum(a != b for a, b in zip(new, original, strict=True)) == 1:
                return changed
    raise AssertionError("no single-token change found")


@pytest.fixture(scope="module")
def records(canary_lm, tiny_lm) -> tuple[int, list[dict]]:
    """Members and non-members sharing the commonest prefix length, and one altered member."""
    corpus = make_corpus(tiny_lm.n_members, tiny_lm.n_nonmembers)
    lengths = Counter(_prefix_len(canary_lm, t) for t in corpus.members)
    prefix = lengths.most_common(1)[0][0]
    members = [t for t in corpus.members if _prefix_len(canary_lm, t) == prefix]
    others = [t for t in corpus.nonmembers if _prefix_len(canary_lm, t) == prefix]
    rows = [{"id": "altered", "text": _one_token_changed(canary_lm, members[0], prefix)}]
    rows += [{"id": f"m{i}", "text": t, "member": True} for i, t in enumerate(members[1:])]
    rows += [{"id": f"n{i}", "text": t, "member": False} for i, t in enumerate(others)]
    assert len(rows) >= 5 and others
    return prefix, rows


def _check(prefix: int, **overrides) -> dict:
    params = {
        "prefix_tokens": prefix,
        "suffix_tokens": SUFFIX,
        "schemes": [{"temperature": 0}, {"top_k": 40}],
        "samples": 4,
        **overrides,
    }
    return {"kind": "approximate", "params": params}


def test_one_token_off_is_approximate_not_verbatim(canary_lm, records) -> None:
    prefix, rows = records
    found = audit_texts(canary_lm, rows, [_check(prefix)])["approximate"]
    altered = found["samples"][0]  # samples come back in input order
    assert altered["verbatim"]["greedy"] is False
    assert altered["approx"]["greedy"] is True and altered["approx_extracted"] is True
    assert altered["rouge_l"]["greedy"] == pytest.approx((SUFFIX - 1) / SUFFIX)
    assert altered["edit_similarity"]["greedy"] == pytest.approx((SUFFIX - 1) / SUFFIX)
    assert 0.75 <= altered["bleu"]["greedy"] < 1
    # The spans cover all of the suffix but the changed token.
    spans = altered["spans"]["greedy"]
    assert sum(end - start for start, end in spans) == SUFFIX - 1 and len(spans) <= 2
    # Memorized members come back verbatim; non-members' secrets were never seen.
    members = [v for v in found["samples"] if v.get("member") is True]
    others = [v for v in found["samples"] if v.get("member") is False]
    assert all(v["verbatim"]["greedy"] for v in members)
    assert not any(v["approx_extracted"] for v in others)
    assert max(v["rouge_l"]["greedy"] for v in others) < 0.75
    summary = found["summary"]
    n = len(rows)
    assert summary["all"]["approx"]["greedy"]["count"] == len(members) + 1
    assert summary["all"]["verbatim"]["greedy"]["count"] == len(members)
    assert summary["all"]["n"] == n and summary["n_skipped"] == 0
    assert summary["members"]["approx"]["greedy"]["rate"] == 1.0
    assert summary["nonmembers"]["approx_any"]["count"] == 0
    assert set(summary["histograms"]) == {
        "rouge_l",
        "lcs_substring_fraction",
        "edit_similarity",
        "bleu",
    }
    counts = summary["histograms"]["bleu"]["counts"]
    assert set(counts) == {"greedy", "topk40_T1"} and sum(counts["greedy"]) == n
    # The token view gets the true suffix's pieces and the highlighted spans.
    detail = altered["detail"]
    assert len(detail["tokens"]) == SUFFIX and detail["spans"]["greedy"] == spans
    assert detail["generated"]["greedy"] != "".join(detail["tokens"])


def test_sampled_generations_are_fixed_by_the_seed_not_the_batch(canary_lm, records) -> None:
    prefix, rows = records
    check = _check(prefix, schemes=[{"temperature": 1.5}], samples=3)
    one = audit_texts(canary_lm, rows, [check], batch_size=16)["approximate"]["samples"]
    again = audit_texts(canary_lm, rows, [check], batch_size=1)["approximate"]["samples"]
    assert one == again
    other = audit_texts(
        canary_lm, rows, [_check(prefix, schemes=[{"temperature": 1.5}], samples=3, seed=1)]
    )
    reseeded = other["approximate"]["samples"]
    assert [v["rouge_l_mean"] for v in reseeded] != [v["rouge_l_mean"] for v in one]


def test_too_short_records_are_skipped_and_said(canary_lm, records) -> None:
    prefix, rows = records
    found = audit_texts(
        canary_lm, [*rows[:2], {"id": "short", "text": "Customer"}], [_check(prefix)]
    )["approximate"]
    short = found["samples"][-1]
    assert short["skipped"] and short["reason"] == "too_short"
    assert "1 of 3 records had no window (too_short)" in found["summary"]["unfit"]


def test_params_are_checked_at_submit() -> None:
    with pytest.raises(ValidationError, match="threshold"):
        ApproximateParams.model_validate(
            {"thresholds": {"bleu": None, "rouge_l": None, "edit_similarity": None}}
        )
    with pytest.raises(ValidationError):
        ApproximateParams.model_validate({"thresholds": {"bleu": 1.5}})
    with pytest.raises(ValidationError, match="context-dependent"):
        ApproximateParams.model_validate({"schemes": [{"repetition_penalty": 1.2}]})
    params = ApproximateParams()
    assert params.thresholds.active() == {"bleu": 0.75, "rouge_l": 0.75, "edit_similarity": 0.75}
    assert [s.name for s in params.scheme_list()] == ["greedy", "topk40_T1"]
    assert REGISTRY.get_check("approximate") is APPROXIMATE
    assert APPROXIMATE.plan(params, SubmitContext(has_reference_model=False)).text is False
