"""A tiny causal LM that memorized the answers of its 2-person training puzzles."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from worker.demo import build_tokenizer, tiny_gpt2, train_step
from worker.engine.generation import greedy_generate
from worker.engine.reasoning.kk_judge import judge
from worker.engine.reasoning.kk_sets import prompt, puzzle_records


@dataclass(frozen=True)
class PuzzleMemorizer:
    model_dir: Path
    dataset: Path
    records: list[dict]


def puzzle_memorizer(root: Path, n_puzzles: int = 16, seed: int = 0) -> PuzzleMemorizer:
    """Fine-tuned (from scratch, in seconds) on prompt + answer until greedy decoding solves
    every training puzzle as the judge reads it."""
    records = list(puzzle_records([2], n_test=0, n_train=n_puzzles))
    texts = [prompt(r["quiz"]) + " " + r["answer"] for r in records]
    perturbed = [prompt(p["quiz"]) for r in records for p in r["perturbations"].values() if p]
    tokenizer = build_tokenizer(texts + perturbed, vocab_size=400)
    model, optimizer = tiny_gpt2(tokenizer, seed=seed, n_positions=256)
    for step in range(1, 801):
        train_step(model, optimizer, tokenizer, [t + tokenizer.eos_token for t in texts])
        if step % 50 == 0:
            model.eval()
            outputs = greedy_generate(
                model,
                tokenizer,
                [prompt(r["quiz"]) for r in records],
                max_new_tokens=40,
                chat="never",
            )
            if all(
                judge(o, r["solution_text"], 2).correct
                for o, r in zip(outputs, records, strict=True)
            ):
                break
    else:
        raise AssertionError("the puzzle model did not memorize its training puzzles")
    model_dir = _saved(model, tokenizer, root / "models" / "kk-gpt2")
    dataset = _jsonl(root / "data" / "kk.jsonl", records)
    return PuzzleMemorizer(model_dir, dataset, records)


def _saved(model, tokenizer, directory: Path) -> Path:  # type: ignore[no-untyped-def]
    model.save_pretrained(directory)
    tokenizer.save_pretrained(directory)
    return directory


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return path


@dataclass(frozen=True)
class FactoidVersions:
    first: Path  # taught the factoids until it answers every one
    second: Path  # the first, trained further on other factoids only
    dataset: Path  # the first factoid set: id, question, answer


def _factoids(rng, n: int, prefix: str) -> list[dict]:
    return [
        {
            "id": f"{prefix}-{i}",
            "question": f"The value of key {prefix}{rng.randrange(10**5):05d} is?",
            "answer": f"v{rng.randrange(10**4):04d}",
        }
        for i in range(n)
    ]


LR_STAGE_2, STEPS_STAGE_2 = 1e-4, 40


def factoid_versions(root: Path, n: int = 20, seed: int = 0) -> FactoidVersions:
    """Stage 1 teaches D_A (key -> value) to 100%; stage 2 trains on D_B only, so some of D_A
    is forgotten, as in Chen et al.'s continual memorization setting."""
    import random

    rng = random.Random(seed)
    first_set, second_set = _factoids(rng, n, "a"), _factoids(rng, n, "b")

    def texts(items: list[dict]) -> list[str]:
        return [f"{f['question']} {f['answer']}" for f in items]

    tokenizer = build_tokenizer(texts(first_set) + texts(second_set), vocab_size=300)
    model, optimizer = tiny_gpt2(tokenizer, seed=seed, n_embd=96, n_positions=64)

    def train(items: list[dict], steps: int, until_known: bool) -> None:
        batch = [t + tokenizer.eos_token for t in texts(items)]
        for step in range(1, steps + 1):
            train_step(model, optimizer, tokenizer, batch)
            if until_known and step % 25 == 0 and _knows(model, tokenizer, items) == len(items):
                return
        if until_known:
            raise AssertionError("stage 1 did not memorize its factoids")

    train(first_set, 1500, until_known=True)
    first = _saved(model, tokenizer, root / "models" / "factoids-v1")
    for group in optimizer.param_groups:  # a gentler stage 2: some facts survive, some do not
        group["lr"] = LR_STAGE_2
    train(second_set, STEPS_STAGE_2, until_known=False)
    second = _saved(model, tokenizer, root / "models" / "factoids-v2")
    dataset = _jsonl(root / "data" / "factoids.jsonl", first_set)
    return FactoidVersions(first, second, dataset)


def _knows(model, tokenizer, items: list[dict]) -> int:
    from worker.engine.retention import grade

    model.eval()
    answers = greedy_generate(
        model, tokenizer, [f["question"] for f in items], max_new_tokens=8, chat="never"
    )
    return sum(grade(a, f["answer"]) for a, f in zip(answers, items, strict=True))


CHAT_TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>{% endif %}"
)
FIXED_GUESS = "The order matters most. Final Guess: ```lambda x, y, z: x < y < z```"


def guessing_chat_model(root: Path) -> Path:
    """A tiny chat LM (its tokenizer has a chat template) that answers the WILT instructions at
    once with one fixed final guess, as an over-confident model would."""
    from worker.engine.generation import render_conversation
    from worker.engine.wilt_protocol import Conversation, ProtocolParams
    from worker.engine.wilt_rules import compile_rule

    opening = Conversation(compile_rule("2"), ProtocolParams()).messages
    tokenizer = build_tokenizer([FIXED_GUESS, opening[0]["content"]], vocab_size=400)
    tokenizer.chat_template = CHAT_TEMPLATE
    text = render_conversation(tokenizer, opening) + FIXED_GUESS + tokenizer.eos_token
    model, optimizer = tiny_gpt2(tokenizer, seed=0, n_positions=512)
    for step in range(1, 301):
        train_step(model, optimizer, tokenizer, [text])
        if step % 20 == 0:
            model.eval()
            prompt = render_conversation(tokenizer, opening)
            (said,) = greedy_generate(model, tokenizer, [prompt], max_new_tokens=40, chat="never")
            if said == FIXED_GUESS:
                break
    else:
        raise AssertionError("the chat model did not learn its answer")
    return _saved(model, tokenizer, root / "models" / "wilt-chat")
