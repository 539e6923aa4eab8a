"""How a guided sample is scheduled, as plain values (no torch), so params can be checked where
no model is loaded: the guidance methods, the serving scale, and one method's plan."""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_SCALE = 7.5


METHODS = ("cfg", "stp", "dtp", "og_dtp")


@dataclass(frozen=True)
class GuidancePlan:
    method: str = "cfg"
    scale: float = DEFAULT_SCALE  # s_after: the serving scale
    tau: int = 500  # stp: s_before while t > tau
    s_before: float | None = None  # stp 0.0, dtp 1.0 unless given
    num_steps: int = 50

    def before(self) -> float:
        if self.s_before is not None:
            return self.s_before
        return 1.0 if self.method == "dtp" else 0.0
