"""bf16 verdicts against float32 on the memorizing tiny GPT-2 (docs/numerics.md): every verdict
that differs is flagged fragile, and the float32 re-check of flagged windows restores it."""

from __future__ import annotations

import copy
import dataclasses
import json

import numpy as np
import pytest
import torch

from worker.checks.lm.kinds import ExtractionParams
from worker.checks.lm.passes import plan_record, recheck_fragile, score_records
from worker.checks.lm.recheck import float32_compute
from worker.checks.lm.report import _extraction_section
from worker.checks.lm.samples import LMPlan
from worker.engine.extraction import window_fragile
from worker.engine.scoring import ScoringRequest, score_sequences
from worker.local import audit_texts, load_local

# Short windows at every offset: many verdicts per text, some decided by small margins.
PARAMS = ExtractionParams(prefix_tokens=4, suffix_tokens=4, stride=1, max_windows=64)
PLAN = LMPlan(text=True, schemes=PARAMS.scheme_list(), extraction=PARAMS)


@pytest.fixture(scope="module")
def models(tiny_lm):
    full = load_local(tiny_lm.model_dir)
    half = copy.deepcopy(full.model).to(torch.bfloat16)
    return full, dataclasses.replace(full, model=half, dtype="bfloat16")


@pytest.fixture(scope="module")
def texts(tiny_lm) -> list[str]:
    return [json.loads(line)["text"] for line in tiny_lm.dataset_path.read_text().splitlines()]


def _verdicts(records, passes, recheck: bool = False) -> list[bool]:
    found = []
    for i, record in enumerate(records):
        for window in record.windows:
            stats = passes[i].get(f"recheck:{window.offset}") if recheck else None
            stats = stats or passes[i][window.sequence]
            span = slice(window.suffix_start, window.suffix_start + PARAMS.suffix_tokens)
            found.append(bool(stats.argmax_match[span].all()))
    return found


def test_bf16_flips_are_flagged_and_the_recheck_restores_float32(models, texts) -> None:
    full, half = models
    runs = {}
    for name, lm in (("full", full), ("half", half)):
        records = [plan_record(t, PLAN, lm, None, 128) for t in texts]
        runs[name] = records, score_records(records, PLAN, lm, None, 16)
    records, passes = runs["half"]
    flagged = [
        window_fragile(passes[i][w.sequence], w.suffix_start, PARAMS.suffix_tokens)
        for i, record in enumerate(records)
        for w in record.windows
    ]
    reference = _verdicts(*runs["full"])
    pass_verdicts = _verdicts(records, passes)
    differ = [a != b for a, b in zip(pass_verdicts, reference, strict=True)]
    print(
        f"\nbf16 vs float32: {sum(differ)} of {len(differ)} window verdicts differ; "
        f"{sum(flagged)} flagged ({sum(flagged) / len(flagged):.1%})"
    )
    assert sum(differ) >= 1, "the fixture no longer has a bf16 flip: the test would be vacuous"
    assert all(f for f, d in zip(flagged, differ, strict=True) if d)
    assert recheck_fragile(records, passes, PLAN, half, 16) == sum(flagged)
    assert _verdicts(records, passes, recheck=True) == reference


def test_hooks_and_an_upcast_copy_compute_the_same_float32_scores(models, texts) -> None:
    _, half = models
    before = {n: p.detach().clone() for n, p in half.model.named_parameters()}
    requests = [ScoringRequest(half.encode(t), detail_positions=range(4, 12)) for t in texts[:6]]
    found = {}
    for name, budget in (("copy", 10**15), ("hooks", 0)):
        with float32_compute(half.model, "cpu", budget_bytes=budget) as model:
            found[name] = score_sequences(model, requests, "cpu", compute_dtype=torch.float32)
    exact = score_sequences(
        copy.deepcopy(half.model).float(), requests, "cpu", compute_dtype=torch.float32
    )
    for copied, hooked, reference in zip(found["copy"], found["hooks"], exact, strict=True):
        np.testing.assert_allclose(hooked.logprobs, reference.logprobs, atol=1e-5)
        np.testing.assert_allclose(copied.logprobs, reference.logprobs, atol=1e-5)
        assert hooked.argmax_match.tolist() == reference.argmax_match.tolist()
        # float32 bounds: far below bf16's (which are near one logit on this model).
        assert np.nanmax(hooked.margin_bounds) < 1e-3
    # The model is left exactly as it was: bf16 weights, same values.
    for name, param in half.model.named_parameters():
        assert param.dtype == torch.bfloat16
        assert torch.equal(param, before[name])


def test_a_forward_that_fails_mid_model_leaves_the_weights_as_they_were(models, texts) -> None:
    """Out of memory inside one module skips its restoring hook: the context still puts every
    bf16 weight back, so the cached model serves the next audit unchanged."""
    _, half = models
    before = {n: p.detach().clone() for n, p in half.model.named_parameters()}
    last = half.model.transformer.h[-1].mlp.c_proj  # upcast by its hook when it fails

    def out_of_memory(*_args: object) -> None:
        raise RuntimeError("simulated out of memory")

    failing = last.register_forward_hook(out_of_memory)
    try:
        with (
            pytest.raises(RuntimeError, match="simulated"),
            float32_compute(half.model, "cpu", budget_bytes=0) as model,
        ):
            score_sequences(model, [ScoringRequest(half.encode(texts[0]))], "cpu")
    finally:
        failing.remove()
    for name, param in half.model.named_parameters():
        assert param.dtype == torch.bfloat16, name
        assert torch.equal(param, before[name])
    assert not any(hasattr(m, "_memaudit_saved") for m in half.model.modules())


def test_audit_reports_flags_rechecks_and_changed_verdicts(models, tiny_lm) -> None:
    records = [json.loads(line) for line in tiny_lm.dataset_path.read_text().splitlines()]
    check = [{"kind": "extraction", "params": PARAMS.model_dump(exclude={"corpus_audit"})}]
    found = {
        name: audit_texts(lm, records, check)["extraction"]
        for name, lm in zip(("full", "half"), models, strict=True)
    }
    counts = found["half"]["summary"]["fragile"]
    assert counts["windows_flagged"] > 0
    assert counts["windows_rechecked"] == counts["windows_flagged"]
    assert counts["verdicts_changed"] >= 1
    # After the re-check the documents' verdicts are float32's.
    greedy = {
        name: [v["greedy_extracted"] for v in result["samples"]] for name, result in found.items()
    }
    assert greedy["half"] == greedy["full"]
    # A float32 model has nothing more precise to re-check with.
    assert found["full"]["summary"]["fragile"]["windows_rechecked"] == 0
    lo, hi = found["half"]["summary"]["all"]["greedy_rate_interval"]
    assert lo <= found["half"]["summary"]["all"]["greedy_rate"] <= hi
    notes = " ".join(_extraction_section(found["half"]["summary"]).notes)
    assert (
        f"{counts['windows_flagged']:,} windows had a greedy verdict within the pass's rounding "
        f"bound; {counts['windows_rechecked']:,} were re-checked in float32 and the re-check "
        f"changed {counts['verdicts_changed']:,} verdicts."
    ) in notes
    # Sampled schemes' memberships within rounding error are counted and said to be unchecked.
    sampled = counts["documents_sampled_fragile"]
    assert sampled and set(sampled) <= {s.name for s in PARAMS.scheme_list()}
    assert "are flagged, not re-checked: their p_z is as computed." in notes


def test_top_k_margins_decide_membership(models, texts) -> None:
    _, half = models
    requests = [ScoringRequest(half.encode(t), detail_positions=range(2, 20)) for t in texts]
    scheme = PARAMS.scheme_list()[1]  # top-k 40 at T = 1
    for stats in score_sequences(half.model, requests, "cpu", schemes=[scheme]):
        margins = stats.kth_margins[scheme.name]
        done = ~np.isnan(margins)
        kept = np.isfinite(stats.scheme_logprobs[scheme.name][done])
        assert ((margins[done] >= 0) == kept).all()
        assert (stats.kth_margin_bounds[scheme.name][done] > 0).all()
