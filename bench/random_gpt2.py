"""A randomly initialised GPT-2 of a given shape: what the benches time (weights do not change
the cost of a pass, and nothing is downloaded)."""

from __future__ import annotations

import torch
from transformers import GPT2Config, GPT2LMHeadModel


def random_gpt2(
    n_layer: int, n_embd: int, vocab: int, n_head: int, **config: int
) -> GPT2LMHeadModel:
    """Seeded, in eval mode, 1,024 positions; `config` adds GPT2Config fields (e.g. BOS/EOS)."""
    torch.manual_seed(0)
    shape = GPT2Config(
        vocab_size=vocab, n_positions=1024, n_embd=n_embd, n_layer=n_layer, n_head=n_head, **config
    )
    return GPT2LMHeadModel(shape).eval()
