"""The few numbers that answer "is it regurgitating, and how much": each family's headline
figures, gathered for cards, list, trend and compare, and two audits' matched by key.

Each carries its direction so a comparison can say better or worse without guessing."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from worker.checks.registry import REGISTRY
from worker.checks.report_kit import Headline


@dataclass(frozen=True)
class Delta:
    first: Headline | None
    second: Headline | None

    @property
    def headline(self) -> Headline:
        return self.first or self.second  # type: ignore[return-value]

    @property
    def change(self) -> float | None:
        if self.first is None or self.second is None:
            return None
        if self.first.value is None or self.second.value is None:
            return None
        return self.second.value - self.first.value

    @property
    def verdict(self) -> str:
        """'worse' when the second audit memorizes more, 'better' when less, else 'same'."""
        change, direction = self.change, self.headline.higher_is_more_memorized
        if change is None or direction is None or abs(change) < 1e-12:
            return "same"
        return "worse" if (change > 0) == direction else "better"

    @property
    def change_text(self) -> str:
        change = self.change
        if change is None:
            return "n/a"
        return f"{change:+.1%}".replace("%", " pts") if self.headline.percent else f"{change:+.3f}"


def headlines(summary: Mapping[str, Any]) -> list[Headline]:
    """Headline figures of every check in an audit's summary, in the registry's order."""
    result = []
    for part in REGISTRY.report_parts():
        for kind, build in part.headlines.items():
            if summary.get(kind):
                result.extend(build(summary[kind]))
    return result


def deltas(first: Mapping[str, Any], second: Mapping[str, Any]) -> list[Delta]:
    """Headlines of the first audit matched by key with the second's."""
    theirs = {h.key: h for h in headlines(second)}
    ours = headlines(first)
    matched = [Delta(h, theirs.get(h.key)) for h in ours]
    known = {h.key for h in ours}
    # Keys only the second audit has (e.g. a check the first lacked) still show, one-sided.
    matched += [Delta(None, h) for key, h in theirs.items() if key not in known]
    return matched
