"""What the reasoning kinds compute from: the audited model's greedy answers and its next
conversation turns, as plain functions.

`compute(context, records, params)` takes a GenerationContext, whose `generate` is the loaded
model's greedy decoding, or, in tests and notebooks, any function from prompts to answers (a
rule-based solver wrapped as a model); its `chat` continues whole conversations."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from worker.checks.shard_pass import REMOTE_INFO, ShardInput, ShardPass, loaded_info
from worker.engine.generation import greedy_generate, render_conversation

Generate = Callable[[Sequence[str], int, str], list[str]]  # prompts, max_new_tokens, chat
# conversations (lists of {"role", "content"}), max_new_tokens: the next assistant turn of each
Chat = Callable[[Sequence[Sequence[dict[str, str]]], int], list[str]]


@dataclass
class GenerationContext:
    generate: Generate  # the audited model
    chat: Chat | None = None  # the audited model in conversation, for `wilt`
    load: Callable[[str], Generate] | None = None  # another version, for `retention`
    _versions: dict[str, Generate] = field(default_factory=dict)

    def version(self, uri: str) -> Generate:
        if uri not in self._versions:
            if self.load is None:
                raise ValueError("this context cannot load other model versions")
            self._versions[uri] = self.load(uri)
        return self._versions[uri]


def model_generator(loaded: Any, batch_size: int) -> Generate:
    """Greedy decoding of a loaded causal LM as a `Generate` function."""

    def generate(prompts: Sequence[str], max_new_tokens: int, chat: str) -> list[str]:
        return greedy_generate(
            loaded.model,
            loaded.tokenizer,
            prompts,
            max_new_tokens=max_new_tokens,
            batch_size=batch_size,
            chat=chat,
            max_prompt_tokens=max(loaded.max_tokens - max_new_tokens, 1),
        )

    return generate


def model_chat(loaded: Any, batch_size: int) -> Chat:
    """The next greedy assistant turn of each conversation, rendered with the chat template."""
    generate = model_generator(loaded, batch_size)

    def chat(conversations: Sequence[Sequence[dict[str, str]]], max_new_tokens: int) -> list[str]:
        prompts = [render_conversation(loaded.tokenizer, c) for c in conversations]
        return generate(prompts, max_new_tokens, "never")  # already rendered

    return chat


def open_pass(shard: ShardInput) -> ShardPass:
    """The audited model answers and converses: a chat endpoint remotely, a causal LM here."""
    if shard.target.kind == "chat_endpoint":
        remote = shard.target.chat()
        speaker = GenerationContext(remote.generate, chat=remote)
        info = dict(REMOTE_INFO)
    else:
        target = shard.target.causal_lm()
        speaker = GenerationContext(
            model_generator(target, shard.batch_size),
            chat=model_chat(target, shard.batch_size),
            load=lambda uri: model_generator(shard.access.causal_lm(uri), shard.batch_size),
        )
        info = loaded_info(target)
    records = shard.records

    def compute(batch: Sequence[int]) -> tuple[list[list[dict[str, Any]]], int]:
        chunk = [records[i] for i in batch]
        return [kind.compute(speaker, chunk, params) for kind, params in shard.checks], 0

    return ShardPass(compute, info)
