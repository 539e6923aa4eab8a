"""What the LM kinds compute from: each record after the shared teacher-forced passes, and the
passes a set of kinds needs."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from worker.engine.schemes import Scheme
from worker.engine.token_stats import TokenStats


@dataclass(frozen=True)
class ExtractionWindow:
    offset: int  # first prefix token among the text tokens
    sequence: str  # the scored sequence holding it: "text" or "window:<offset>"
    suffix_start: int  # TokenStats index of the first suffix prediction
    prefix_ids: tuple[int, ...] = ()
    suffix_ids: tuple[int, ...] = ()


@dataclass(frozen=True)
class LMSample:
    """One record as an LM check sees it, after the shared teacher-forced passes."""

    sample_id: str
    text: str
    member: bool | None
    duplicates: int | None
    # "text", "lower", "window:<offset>", and "recheck:<offset>" for a fragile extraction window
    # scored again in float32.
    passes: Mapping[str, TokenStats]
    n_text_tokens: int = 0
    windows: Sequence[ExtractionWindow] = ()
    reference: TokenStats | None = None
    same_ref_tokens: bool = False
    # Token ids -> (prefix text, one display piece per token); for the token-by-token view.
    render: Callable[[Sequence[int], Sequence[int]], tuple[str, list[str]]] | None = None
    # Per kind name: what that kind's own model work (passes.KIND_WORK) found for this record.
    extras: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class LMPlan:
    """What an LM check needs from the passes, merged across the checks of an audit."""

    text: bool = False
    moments: bool = False  # μ_t and σ_t over the vocabulary (Min-K%++)
    lower: bool = False
    reference: bool = False
    schemes: tuple[Scheme, ...] = ()
    extraction: Any = None  # ExtractionParams when windows are needed
    max_tokens: int | None = None
    # Load the reference model for a kind's own work (KIND_WORK) without the shared
    # reference pass over every text (finetune: the base).
    load_reference: bool = False
    pac: PacPlan | None = None  # PAC's augmentations, scored as "pac:<i>"


@dataclass(frozen=True)
class PacPlan:
    """PAC's random-swap augmentations of each record (worker/engine/attacks_pac.py)."""

    n: int
    alpha: float
    seed: int


def merge_plans(plans: Sequence[LMPlan]) -> LMPlan:
    """One set of passes serves every LM check of an audit."""
    schemes: dict[str, Scheme] = {}
    for plan in plans:
        for scheme in plan.schemes:
            schemes.setdefault(scheme.name, scheme)
    limits = [plan.max_tokens for plan in plans if plan.max_tokens]
    extraction = [plan.extraction for plan in plans if plan.extraction is not None]
    pac = [plan.pac for plan in plans if plan.pac is not None]
    return LMPlan(
        text=any(plan.text for plan in plans),
        moments=any(plan.moments for plan in plans),
        lower=any(plan.lower for plan in plans),
        reference=any(plan.reference for plan in plans),
        schemes=tuple(schemes.values()),
        extraction=extraction[0] if extraction else None,
        max_tokens=min(limits) if limits else None,
        load_reference=any(plan.load_reference for plan in plans),
        pac=pac[0] if pac else None,
    )
