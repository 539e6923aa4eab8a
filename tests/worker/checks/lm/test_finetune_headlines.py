"""The finetune kind's headlines (what cards and trends show): the share of records extractable
from the fine-tune but not its base, and Min-K% over Δℓ's AUROC when the records are labelled.
The summary is summarize_finetune's over per-record values built as finetune_work builds them
(the trained end-to-end case is test_finetune.py)."""

from __future__ import annotations

import pytest

from worker.checks.lm.finetune import FinetuneParams, summarize_finetune
from worker.checks.lm.report import REPORT


def _record(i: int, member: bool | None, only: bool) -> dict:
    window = {"mean_delta": 2.0 if only else 0.1, "delta": 2.0, "base_match_len": 1}
    gain = (3.0 if member else 0.0) + i * 0.01
    return {
        "id": f"r{i}",
        "mean_delta": gain,
        "mink_delta_0.2": gain,
        "n_windows": 1,
        "target_extracted": only,
        "base_extracted": False,
        "target_not_base": only,
        "best_window_offset": 0,
        "best_window": window,
        **({} if member is None else {"member": member}),
    }


def _headlines(values: list[dict]) -> dict:
    summary = summarize_finetune(values, FinetuneParams(bootstrap=50))
    return {h.key: h for h in REPORT.headlines["finetune"](summary)}


def test_headlines_of_a_labelled_finetune() -> None:
    values = [_record(i, True, only=i < 6) for i in range(8)]
    values += [_record(8 + i, False, only=False) for i in range(8)]
    found = _headlines(values)
    assert found["finetune.all.target_not_base"].value == pytest.approx(6 / 16)
    assert found["finetune.all.target_not_base"].note == "6 of 16 records"
    assert found["finetune.members.target_not_base"].value == pytest.approx(6 / 8)
    auroc = found["finetune.mink_delta_auroc"]
    assert auroc.value == pytest.approx(1.0) and auroc.label.startswith("Min-0.2 Δℓ")
    assert auroc.ci95 is not None
    # Trends draw these keys.
    assert {"finetune.all.target_not_base", "finetune.mink_delta_auroc"} <= set(REPORT.trend)


def test_headlines_without_labels_or_windows() -> None:
    found = _headlines([_record(i, None, only=i == 0) for i in range(4)])
    assert set(found) == {"finetune.all.target_not_base"}  # no AUROC without labels
    assert found["finetune.all.target_not_base"].value == pytest.approx(0.25)
    unwindowed = [{**_record(0, None, only=False), "n_windows": 0}]
    assert _headlines(unwindowed) == {}


def test_a_gain_stored_as_null_summarizes_as_nan() -> None:
    """A Δℓ that was not finite is stored as null (core/db.py): the record it belongs to is
    ranked and left out as the NaN was, not a TypeError that fails finalize."""
    import json
    import math

    from core.db import json_text

    def undefined(value: float | None) -> dict:
        record = _record(7, True, only=True)
        record["best_window"] = {**record["best_window"], "mean_delta": value}
        return {**record, "mink_delta_0.2": value}

    values = [_record(i, True, only=i < 6) for i in range(6)]
    values += [_record(8 + i, False, only=False) for i in range(8)]
    params = FinetuneParams(bootstrap=50)
    summary = summarize_finetune([*values, undefined(None)], params)
    with_nan = summarize_finetune([*values, undefined(math.nan)], params)
    assert json.loads(json_text(summary)) == json.loads(json_text(with_nan))
    assert [r["id"] for r in summary["target_not_base"]][-1] == "r7"
    assert summary["scores"]["mink_delta_0.2"]["n_members"] == 6
