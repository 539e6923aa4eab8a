"""Generating a fixed number of suffix tokens from token-id prefixes, batched with the KV cache,
under a sampling scheme exactly as `sampling.py` defines it.

Rows are left padded (`generation.left_padded`) with position ids counted from each row's first
real token, so a row's logits do not depend on what it is batched with. A sampled row draws
from its own seeded `torch.Generator` on the CPU: the same seed gives the same tokens whatever
the batch, the device or the order in which a shard's records are run. Exactly `new_tokens`
tokens are generated per row, EOS included like any other token, since the suffix compared is
of fixed length.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Sequence
from typing import Any

import torch

from worker.engine.generation import left_padded
from worker.engine.sampling import scheme_distribution
from worker.engine.schemes import Scheme


def row_seed(*parts: object) -> int:
    """A stable 63-bit seed from the parts that name a draw (audit seed, record, scheme, sample):
    Python's `hash` changes between processes, a digest does not."""
    digest = hashlib.sha256("\x1f".join(map(str, parts)).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") >> 1


def _forward_names(model: Any) -> tuple[bool, str, dict[str, int]]:
    """Whether the model's forward takes position ids, what it calls its KV cache (`cache` from
    transformers 5, `past_key_values` before), and how to ask for the last position's logits
    only (the prompt's other (B, W, V) logits would be memory spent for nothing)."""
    params = inspect.signature(model.forward).parameters
    last_only = {name: 1 for name in ("logits_to_keep", "num_logits_to_keep") if name in params}
    cache = "cache" if "cache" in params else "past_key_values"
    return "position_ids" in params, cache, dict(list(last_only.items())[:1])


def _next_tokens(
    logits: torch.Tensor, scheme: Scheme, generators: Sequence[torch.Generator | None]
) -> torch.Tensor:
    """One token per row (B,) from the last position's logits (B, V)."""
    if scheme.greedy:
        return logits.argmax(dim=-1)  # lowest index among tied maxima, as HF greedy decoding
    probs = scheme_distribution(logits.float(), scheme).cpu()  # (B, V) float64
    drawn = [
        torch.multinomial(probs[row], 1, generator=generator)
        for row, generator in enumerate(generators)
    ]
    return torch.cat(drawn).to(logits.device)


@torch.inference_mode()
def _generate_chunk(
    model: Any,
    prefixes: Sequence[Sequence[int]],
    new_tokens: int,
    scheme: Scheme,
    seeds: Sequence[int | None],
    pad_id: int,
    device: str | torch.device,
) -> list[list[int]]:
    ids, mask = left_padded(prefixes, pad_id)
    ids, mask = ids.to(device), mask.to(device)
    generators = []
    for seed in seeds:
        generator = None
        if seed is not None:
            generator = torch.Generator(device="cpu")
            generator.manual_seed(seed)
        generators.append(generator)
    with_positions, cache_name, last_only = _forward_names(model)
    positions = (mask.cumsum(dim=-1) - 1).clamp(min=0)  # (B, W)
    extra = {"position_ids": positions} if with_positions else {}
    out = model(input_ids=ids, attention_mask=mask, use_cache=True, **extra, **last_only)
    produced: list[torch.Tensor] = []
    for step in range(new_tokens):
        token = _next_tokens(out.logits[:, -1, :], scheme, generators)  # (B,)
        produced.append(token)
        if step == new_tokens - 1:
            break
        mask = torch.cat([mask, torch.ones_like(mask[:, :1])], dim=-1)
        positions = positions[:, -1:] + 1
        extra = {"position_ids": positions} if with_positions else {}
        out = model(
            input_ids=token[:, None],
            attention_mask=mask,
            use_cache=True,
            **{cache_name: getattr(out, cache_name)},
            **extra,
        )
    return torch.stack(produced, dim=1).tolist() if produced else [[] for _ in prefixes]


def generate_suffixes(
    model: Any,
    prefixes: Sequence[Sequence[int]],
    *,
    new_tokens: int,
    scheme: Scheme,
    seeds: Sequence[int | None] | None = None,
    pad_id: int = 0,
    batch_size: int = 8,
    device: str | torch.device = "cpu",
) -> list[list[int]]:
    """`new_tokens` generated ids per prefix, in the prefixes' order.

    prefixes: token ids, the model's special prefix included; seeds: one per prefix, required
    for a sampled scheme (None for greedy).
    """
    if not scheme.greedy and (seeds is None or any(s is None for s in seeds)):
        raise ValueError("a sampled scheme needs one seed per prefix")
    if seeds is not None and len(seeds) != len(prefixes):
        raise ValueError("one seed per prefix")
    if any(len(p) == 0 for p in prefixes):
        raise ValueError("every prefix needs at least one token to condition on")
    row_seeds = list(seeds) if seeds is not None else [None] * len(prefixes)
    order = sorted(range(len(prefixes)), key=lambda i: len(prefixes[i]))
    found: list[list[int]] = [[] for _ in prefixes]
    for start in range(0, len(order), max(batch_size, 1)):
        chunk = order[start : start + batch_size]
        rows = _generate_chunk(
            model,
            [prefixes[i] for i in chunk],
            new_tokens,
            scheme,
            [row_seeds[i] for i in chunk],
            pad_id,
            device,
        )
        for i, row in zip(chunk, rows, strict=True):
            found[i] = row
    return found
