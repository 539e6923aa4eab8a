"""ReCaLL, Con-ReCall and DC-PDD per record, from the text pass and the membership check's own
prefix work (prefix_work.py), and what the summary says of the held-out records they used."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from worker.checks.lm.kinds import MembershipParams
from worker.engine.prefix_attacks import con_recall_score, dc_pdd_score, recall_score
from worker.engine.token_stats import TokenStats


def held_out_scores(
    text: TokenStats, work: dict[str, Any], params: MembershipParams
) -> dict[str, Any]:
    """The wanted held-out scores of one scored record (none when the work found none)."""
    wanted = params.prefix_scores()
    if not wanted:
        return {}
    if "holdout_error" in work:
        return {"holdout_error": work["holdout_error"]}
    if "n_conditioned" not in work:
        return {}
    values: dict[str, Any] = {"n_prefix_tokens": work["n_prefix_tokens"]}
    # LL(x) over the same text tokens the prefix passes read: those predicted with a left context.
    n_plain = work["specials"] + work["n_conditioned"] - 1
    ll = float(np.mean(text.logprobs[:n_plain])) if n_plain > 0 else None
    nonmember = work.get("ll_nonmember_prefix")
    member = work.get("ll_member_prefix")
    if ll is not None and nonmember is not None:
        if "recall" in wanted:
            values["recall"] = recall_score(nonmember, ll)
        if "con_recall" in wanted and member is not None:
            values["con_recall"] = con_recall_score(nonmember, member, ll, params.con_recall_gamma)
    if "dc_pdd" in wanted and "log_frequencies" in work:
        ids = work["predicted_ids"][: len(text.logprobs)]
        values["dc_pdd"] = dc_pdd_score(
            text.logprobs[: len(ids)], ids, work["log_frequencies"], params.dc_pdd_cap
        )
    return values


def holdout_summary(
    values: Sequence[dict[str, Any]],
    held_out: Sequence[dict[str, Any]],
    summary: dict[str, Any],
    params: MembershipParams,
) -> dict[str, Any]:
    """Which records were held out and for what, and loss's AUROC on the scored records the
    held-out scores share; when none ran, the first error the work met (a reference corpus too
    small, a context too short, too few labels), as a warning and in `not_computed`."""
    wanted = params.prefix_scores()
    if not wanted:
        return {}
    # Every record of a failed selection carries the same error: the first one met is it.
    errors = [v["holdout_error"] for v in values if v.get("holdout_error")]
    entry: dict[str, Any] = {
        "scores": sorted(wanted),
        "shots": params.shots,
        "prefix_tokens": params.prefix_tokens,
        "holdout_share": params.holdout_share,
        "seed": params.seed,
        "source": params.reference_corpus or "held-out records of the dataset",
    }
    if errors:
        entry["not_computed"] = errors[0]
        summary["warnings"].append(f"{sorted(wanted)} not computed: {errors[0]}")
        for name in wanted:
            summary["scores"][name] = {"not_computed": errors[0]}
        return {"holdout": entry}

    def ids(role: str, member: bool) -> list[str]:
        """Named by position and id: ids may repeat."""
        chosen = [v for v in held_out if v["held_out"] == role and v["member"] is member]
        return [_name(v) for v in sorted(chosen, key=lambda v: (v.get("index") or 0, v["id"]))]

    entry["prefix"] = {"members": ids("prefix", True), "nonmembers": ids("prefix", False)}
    entry["frequency_only"] = {
        "members": ids("frequency", True),
        "nonmembers": ids("frequency", False),
    }
    entry["n_held_out"] = len(held_out)
    used = [v["n_prefix_tokens"] for v in values if "n_prefix_tokens" in v]
    # The shots' tokens the prefix held: prefix_tokens, or less where the context is short.
    entry["prefix_tokens_used"] = max(used) if used else None
    entry["n_scored"] = sum(1 for v in values if not v.get("held_out") and not v.get("skipped"))
    loss = summary["scores"].get("loss", {})
    entry["loss_auroc_same_records"] = loss.get("auroc")
    return {"holdout": entry}


def _name(value: dict[str, Any]) -> str:
    index = value.get("index")
    return value["id"] if index is None else f"{index}:{value['id']}"
