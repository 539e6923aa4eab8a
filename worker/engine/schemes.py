"""A sampling scheme as served (temperature, top-k, top-p) and its name in reports: plain
values, without torch, so params can be checked where no model is loaded."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Scheme:
    temperature: float = 1.0  # 0 means greedy decoding
    top_k: int = 0  # 0 (or >= vocabulary) means off
    top_p: float = 1.0  # 1 means off

    def __post_init__(self) -> None:
        if self.temperature < 0 or not math.isfinite(self.temperature):
            raise ValueError("temperature must be >= 0")
        if self.top_k < 0:
            raise ValueError("top_k must be >= 0")
        if not 0 < self.top_p <= 1:
            raise ValueError("top_p must lie in (0, 1]")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    @property
    def name(self) -> str:
        """`greedy`, or e.g. `topk40_T1`, `topp0.9_T0.7`, `topk50_topp0.95_T1`."""
        if self.greedy:
            return "greedy"
        parts = [f"topk{self.top_k}"] if self.top_k else []
        if self.top_p < 1:
            parts.append(f"topp{self.top_p:g}")
        parts.append(f"T{self.temperature:g}")
        return "_".join(parts)


GREEDY = Scheme(temperature=0.0)
