"""Which texts share a forward pass: batches sized by tokens, found from the device's memory.

A forward over a right-padded batch costs rows x longest row tokens, padding included, so texts
are sorted by length and cut into runs whose padded size fits a token budget and whose padding
stays a small share of the tokens. The budget comes from the memory one forward's activations
take per token (no KV cache: the teacher-forced pass keeps nothing between layers).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

# The share of free memory activations may fill: the caching allocator's fragmentation, the
# head's own chunk buffers beside them, and the estimate's looseness take the rest.
SAFETY_FRACTION = 0.5
# No free-memory reading exists for host RAM that other processes share, so the CPU gets a
# stated budget: 2 GiB of activations per forward.
CPU_ACTIVATION_BYTES = 2 * 1024**3
# Padded tokens may exceed the useful ones by this share in any batch (so in all of them).
MAX_PADDING = 0.1


def plan_batches(lengths: Sequence[int], batch_size: int) -> list[list[int]]:
    """Group indices of similar length together, batch_size at a time (records per shard
    batch, where the cost of a record is not known yet)."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def plan_token_batches(
    lengths: Sequence[int],
    token_budget: int,
    max_batch: int | None = None,
    max_padding: float = MAX_PADDING,
) -> list[list[int]]:
    """Indices cut into batches, longest first, each within rows x longest <= token_budget.

    A batch grows while its padded size fits the budget, it has fewer than max_batch rows,
    and padded / useful tokens stay <= 1 + max_padding; a text longer than the budget gets a
    batch of its own. Every index appears exactly once.

    >>> plan_token_batches([5, 100, 7, 98, 6], token_budget=200)
    [[1, 3], [2, 4], [0]]
    """
    if token_budget < 1:
        raise ValueError(f"token_budget must be positive, got {token_budget}")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batches: list[list[int]] = []
    batch: list[int] = []
    width = useful = 0
    for index in order:
        length = max(lengths[index], 1)
        rows = len(batch) + 1
        fits = (
            batch
            and rows * width <= token_budget
            and (max_batch is None or rows <= max_batch)
            and rows * width <= (1 + max_padding) * (useful + length)
        )
        if fits:
            batch.append(index)
            useful += length
            continue
        if batch:
            batches.append(batch)
        batch, width, useful = [index], length, length  # longest first: the batch's width
    if batch:
        batches.append(batch)
    return batches


def activation_bytes_per_token(
    config: Any, dtype_bytes: int, length: int = 0, scores_materialised: bool = False
) -> int:
    """Peak activation bytes per token of one forward without cache, for a pre-norm block.

    bytes/token = dtype_bytes x (7 H + 2 H_kv + 3 I + L + n_heads x L x [scores materialised])

    - 7 H: within a layer the residual stream, its normed copy, the query, the attention
      output and its projection (5 H); after the last layer the final hidden state and the
      gathered copy the head reads (2 H);
    - 2 H_kv: keys and values (H_kv = n_kv_heads x head_dim; H without grouped queries);
    - 3 I: the MLP's gate, up and activated product (a two-matrix MLP holds fewer);
    - L: the (B, 1, T, T) additive mask transformers builds for a padded batch, T <= L the
      longest text;
    - n_heads x L: attention scores where they are materialised (SDPA's math path, taken as
      the CPU's); a fused kernel (flash, memory-efficient SDPA on CUDA) keeps them in tiles.

    Layers run one after another and inference frees each one's activations, so the peak is
    one layer's, not n_layers times it. The output head is budgeted apart (its chunks).
    """
    hidden = _config_int(config, "hidden_size", "n_embd", "d_model")
    heads = _config_int(config, "num_attention_heads", "n_head")
    kv_heads = getattr(config, "num_key_value_heads", None) or heads
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    intermediate = getattr(config, "intermediate_size", None) or getattr(config, "n_inner", None)
    intermediate = intermediate or 4 * hidden
    scores = heads * length if scores_materialised else 0
    elements = 7 * hidden + 2 * kv_heads * head_dim + 3 * intermediate + length + scores
    return dtype_bytes * elements


def token_budget(
    model: torch.nn.Module,
    device: str | torch.device,
    free_bytes: int | None = None,
    *,
    length: int = 0,
    safety: float = SAFETY_FRACTION,
    compute_dtype: torch.dtype | None = None,
) -> int:
    """Padded tokens one forward may hold: safety x free bytes / activation bytes per token,
    for texts of at most `length` tokens (activation_bytes_per_token gives the formula).

    Free bytes: on CUDA what the driver reports free plus what PyTorch's allocator holds
    unused (both can be handed to activations), on the tightest GPU a split model spans; on
    the CPU CPU_ACTIVATION_BYTES; or as given. `compute_dtype`: the activations' dtype when it
    is not the weights' (a float32 re-check of a bf16 model).
    """
    device = torch.device(device)
    if free_bytes is None:
        if device.type == "cuda":
            spanned = {p.device for p in model.parameters() if p.device.type == "cuda"}
            free_bytes = min(cuda_free_bytes(d) for d in spanned or {device})
        else:
            free_bytes = CPU_ACTIVATION_BYTES
    # Activations are in the compute dtype: float32 when a bf16 model is upcast by hooks.
    dtype = compute_dtype or next(model.parameters()).dtype
    dtype_bytes = torch.empty((), dtype=dtype).element_size()
    # Fused attention (SDPA, flash) never holds the scores; eager attention, which the CPU
    # path and some models on CUDA take (e.g. soft-capped attention), holds them.
    eager = getattr(model.config, "_attn_implementation", None) == "eager"
    per_token = activation_bytes_per_token(
        model.config, dtype_bytes, length, scores_materialised=device.type != "cuda" or eager
    )
    return max(1, int(safety * free_bytes) // per_token)


def cuda_free_bytes(device: torch.device) -> int:
    """What a GPU can still hand out: free on the driver plus the allocator's unused cache."""
    free, _ = torch.cuda.mem_get_info(device)
    return free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)


def _config_int(config: Any, *names: str) -> int:
    for name in names:
        value = getattr(config, name, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ValueError(f"the model config has none of {names}")
