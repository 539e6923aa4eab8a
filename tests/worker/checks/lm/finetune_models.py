"""A tiny base, its full fine-tune and a LoRA adapter, trained here for the finetune tests.

The base learns the canary template from generic records; the fine-tunes then memorize the
member canaries, which neither the base nor any non-member text ever showed it.
"""

from __future__ import annotations

import copy
import random
from dataclasses import dataclass
from pathlib import Path

import torch

from worker.demo import (
    build_tokenizer,
    canary_text,
    greedy_memorized,
    make_corpus,
    tiny_gpt2,
    train_step,
)

N_MEMBERS = 16


@dataclass(frozen=True)
class FinetuneModels:
    base: Path
    full: Path
    adapter: Path
    members: list[str]
    nonmembers: list[str]


def _generic(n: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return [canary_text(rng) for _ in range(n)]


def _memorize(model, tokenizer, texts: list[str], max_steps: int, lr: float) -> None:  # type: ignore[no-untyped-def]
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    for step in range(1, max_steps + 1):
        train_step(model, optimizer, tokenizer, texts)
        if step % 25 == 0:
            model.eval()
            if all(greedy_memorized(model, tokenizer, text) for text in texts):
                return
    raise RuntimeError(f"the fine-tune did not memorize its canaries in {max_steps} steps")


def build_finetunes(root: Path) -> FinetuneModels:
    from peft import LoraConfig, get_peft_model

    corpus = make_corpus(N_MEMBERS, N_MEMBERS, seed=7)
    generic = _generic(128, seed=8)
    tokenizer = build_tokenizer(generic + corpus.members + corpus.nonmembers)
    torch.manual_seed(0)
    base, optimizer = tiny_gpt2(tokenizer, seed=0)
    rng = random.Random(0)
    for _ in range(200):
        train_step(base, optimizer, tokenizer, rng.sample(generic, 16))
    base.eval()
    paths = FinetuneModels(
        root / "base", root / "full", root / "adapter", corpus.members, corpus.nonmembers
    )
    base.save_pretrained(paths.base)
    tokenizer.save_pretrained(paths.base)

    full = copy.deepcopy(base)
    _memorize(full, tokenizer, corpus.members, max_steps=600, lr=3e-3)
    full.save_pretrained(paths.full)
    tokenizer.save_pretrained(paths.full)

    config = LoraConfig(
        r=16,
        lora_alpha=32,
        target_modules=["c_attn", "c_proj", "c_fc"],
        fan_in_fan_out=True,
        lora_dropout=0.0,
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(1)
    adapted = get_peft_model(copy.deepcopy(base), config)
    _memorize(adapted, tokenizer, corpus.members, max_steps=1000, lr=2e-2)
    adapted.save_pretrained(paths.adapter)  # adapter_model.safetensors
    return paths
