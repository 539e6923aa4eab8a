"""Greedy generation for the checks that must read what a model says (K&K answers, factoids):
batched, left-padded, with the KV cache, only the new tokens decoded.

Prompts go in order of length so a batch pads little; a tokenizer with a chat template gets
the prompt as one user turn (`chat="auto"`), otherwise the raw text.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch


def render_prompt(tokenizer: Any, prompt: str, chat: str = "auto") -> str:
    if chat == "auto" and getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": prompt}], add_generation_prompt=True, tokenize=False
        )
    return prompt


def render_conversation(tokenizer: Any, messages: Sequence[dict[str, str]]) -> str:
    """A multi-turn conversation as the model's prompt: its chat template when it has one, else
    a plain transcript ending where the assistant's next turn starts."""
    if getattr(tokenizer, "chat_template", None):
        try:
            return tokenizer.apply_chat_template(
                list(messages), add_generation_prompt=True, tokenize=False
            )
        except Exception:  # a template without a system role (Gemma's): fold it into turn one
            if not messages or messages[0]["role"] != "system" or len(messages) < 2:
                raise
            first = {
                "role": messages[1]["role"],
                "content": messages[0]["content"] + "\n\n" + messages[1]["content"],
            }
            return tokenizer.apply_chat_template(
                [first, *messages[2:]], add_generation_prompt=True, tokenize=False
            )
    turns = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "\n\n".join([*turns, "Assistant:"])


def left_padded(sequences: Sequence[Sequence[int]], pad: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids (B, W) padded on the left, so every row ends where generation starts, and the
    attention mask (B, W) that hides the padding."""
    width = max(len(ids) for ids in sequences)
    ids = torch.full((len(sequences), width), pad, dtype=torch.long)
    mask = torch.zeros((len(sequences), width), dtype=torch.long)
    for row, sequence in enumerate(sequences):
        if sequence:
            ids[row, width - len(sequence) :] = torch.tensor(list(sequence))
            mask[row, width - len(sequence) :] = 1
    return ids, mask


@torch.inference_mode()
def greedy_generate(
    model: Any,
    tokenizer: Any,
    prompts: Sequence[str],
    *,
    max_new_tokens: int,
    batch_size: int = 8,
    chat: str = "auto",
    max_prompt_tokens: int | None = None,
) -> list[str]:
    """The greedy continuation of each prompt, in the prompts' order."""
    device = next(model.parameters()).device
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    encoded = [
        tokenizer(render_prompt(tokenizer, p, chat), add_special_tokens=True)["input_ids"]
        for p in prompts
    ]
    if max_prompt_tokens is not None:
        encoded = [ids[-max_prompt_tokens:] for ids in encoded]
    order = sorted(range(len(prompts)), key=lambda i: len(encoded[i]))
    outputs: list[str] = [""] * len(prompts)
    for start in range(0, len(order), batch_size):
        chunk = order[start : start + batch_size]
        ids, mask = left_padded([encoded[i] for i in chunk], pad)
        width = ids.shape[1]
        generated = model.generate(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            use_cache=True,
            pad_token_id=pad,
            eos_token_id=tokenizer.eos_token_id,
        )
        for row, i in enumerate(chunk):
            new = generated[row, width:].tolist()
            if tokenizer.eos_token_id in new:
                new = new[: new.index(tokenizer.eos_token_id)]
            outputs[i] = tokenizer.decode(new, skip_special_tokens=True)
    return outputs
