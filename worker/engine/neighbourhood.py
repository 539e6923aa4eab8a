"""Neighbourhood comparison (Mattern et al., Findings of ACL 2023, "Membership Inference Attacks
against Language Models via Neighbourhood Comparison"), as MIMIR implements it for a BERT-style
masked LM: iamgroot42/mimir at commit 1b6fd649eeeecc887275a2336c7da808ee58757d,
`mimir/attacks/neighborhood.py` (`BertModel.generate_neighbors_`, the default `deterministic`
strategy with `original_tokenization_swap`), and `NeighborhoodAttack._attack`.

Neighbours: the text is tokenized by the masked LM (truncated to its length); for every token
after the first, dropout (p 0.7, the authors' value) is applied to that token's input embedding
alone and the masked LM predicts the position; each of its top-6 candidates other than the
token itself is a replacement weighted p(candidate) / (1 - p(token)) (1 - 0.9 when p(token) is
1). The `n` heaviest replacements each give one neighbour: the token's characters in the text
swapped for the candidate's text (`##` removed). The score is the mean of the neighbours' losses
under the target minus the record's own loss: higher is more member-like.

One departure from MIMIR, which tries every position after the first: positions holding a
special token (the closing [SEP], whose empty offsets would paste the candidate before the
text) and special-token candidates are skipped, so every neighbour is the text with one of its
own tokens swapped for a vocabulary token.

The dropout draws come from torch's generator seeded with `seed` inside a forked RNG state, one
draw per position in order, as MIMIR's `torch.nn.Dropout` makes them after `torch.manual_seed`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

DROPOUT = 0.7
TOP_CANDIDATES = 6
N_NEIGHBOURS = 25
MAX_LENGTH = 512  # MIMIR's max_tokens for the masked LM's input


@torch.inference_mode()
def neighbours(
    text: str,
    model: Any,
    tokenizer: Any,
    *,
    n: int = N_NEIGHBOURS,
    seed: int = 0,
    batch_size: int = 32,
    max_length: int = MAX_LENGTH,
) -> list[str]:
    """The record's `n` one-token neighbours from the masked LM (fewer when the text offers
    fewer replacements); `tokenizer` must be a fast one (offsets)."""
    device = next(model.parameters()).device
    encoded = tokenizer(
        text,
        truncation=True,
        max_length=max_length,
        return_offsets_mapping=True,
        return_tensors="pt",
    )
    ids = encoded.input_ids.to(device)
    offsets = encoded.offset_mapping[0].tolist()
    n_tokens = ids.shape[1]
    if n_tokens < 2:
        return []
    embeds = model.base_model.embeddings(ids)  # (1, T, H): the embedding layer's output
    special = set(tokenizer.all_special_ids)
    positions = [p for p in range(1, n_tokens) if int(ids[0, p]) not in special]
    if not positions:
        return []
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        dropped = [
            torch.nn.functional.dropout(embeds[:, p, :], DROPOUT, training=True) for p in positions
        ]
    weights: dict[tuple[int, int], float] = {}
    for start in range(0, len(positions), batch_size):
        chunk = positions[start : start + batch_size]
        rows = embeds.repeat(len(chunk), 1, 1)
        for row, p in enumerate(chunk):
            rows[row, p, :] = dropped[start + row][0]
        probs = torch.softmax(model(inputs_embeds=rows).logits.float(), dim=-1)
        for row, p in enumerate(chunk):
            token = int(ids[0, p])
            own = float(probs[row, p, token])
            top_p, top_ids = torch.topk(probs[row, p, :], TOP_CANDIDATES)
            for candidate, prob in zip(top_ids.tolist(), top_p.tolist(), strict=True):
                if candidate != token and candidate not in special:
                    weights[(p, candidate)] = prob / (1 - 0.9 if own == 1 else 1 - own)
    # Heaviest first; equal weights keep the order they were found in (as heapq.nlargest).
    chosen = sorted(weights, key=weights.__getitem__, reverse=True)[:n]
    found = []
    for p, candidate in chosen:
        start, end = offsets[p]
        fill = tokenizer.decode(candidate).replace("##", "")
        found.append(text[:start] + fill + text[end:])
    return found


def neighbourhood_score(
    record_loss: float | None, neighbour_losses: Sequence[float]
) -> float | None:
    """Mean neighbour loss minus the record's loss; None without both."""
    if record_loss is None or not neighbour_losses:
        return None
    return float(sum(neighbour_losses) / len(neighbour_losses) - record_loss)
