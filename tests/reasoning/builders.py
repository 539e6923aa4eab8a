"""A tiny causal LM that memorized the answers of its 2-person training puzzles."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from worker.demo import build_tokenizer
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
    from transformers import GPT2Config, GPT2LMHeadModel

    records = list(puzzle_records([2], n_test=0, n_train=n_puzzles))
    texts = [prompt(r["quiz"]) + " " + r["answer"] for r in records]
    perturbed = [prompt(p["quiz"]) for r in records for p in r["perturbations"].values() if p]
    tokenizer = build_tokenizer(texts + perturbed, vocab_size=400)
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=256,
        n_embd=128,
        n_layer=2,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = GPT2LMHeadModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = tokenizer([t + tokenizer.eos_token for t in texts], return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    for step in range(1, 801):
        model.train()
        loss = model(**batch, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
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
    model_dir = root / "models" / "kk-gpt2"
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    dataset = root / "data" / "kk.jsonl"
    dataset.parent.mkdir(parents=True, exist_ok=True)
    dataset.write_text("".join(json.dumps(r) + "\n" for r in records))
    return PuzzleMemorizer(model_dir, dataset, records)


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

    from transformers import GPT2Config, GPT2LMHeadModel

    rng = random.Random(seed)
    first_set, second_set = _factoids(rng, n, "a"), _factoids(rng, n, "b")

    def texts(items: list[dict]) -> list[str]:
        return [f"{f['question']} {f['answer']}" for f in items]

    tokenizer = build_tokenizer(texts(first_set) + texts(second_set), vocab_size=300)
    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=64,
        n_embd=96,
        n_layer=2,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = GPT2LMHeadModel(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def train(items: list[dict], steps: int, until_known: bool) -> None:
        batch = tokenizer(
            [t + tokenizer.eos_token for t in texts(items)], return_tensors="pt", padding=True
        )
        labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
        for step in range(1, steps + 1):
            model.train()
            loss = model(**batch, labels=labels).loss
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            if until_known and step % 25 == 0 and _knows(model, tokenizer, items) == len(items):
                return
        if until_known:
            raise AssertionError("stage 1 did not memorize its factoids")

    train(first_set, 1500, until_known=True)
    first = root / "models" / "factoids-v1"
    model.save_pretrained(first)
    tokenizer.save_pretrained(first)
    for group in optimizer.param_groups:  # a gentler stage 2: some facts survive, some do not
        group["lr"] = LR_STAGE_2
    train(second_set, STEPS_STAGE_2, until_known=False)
    second = root / "models" / "factoids-v2"
    model.save_pretrained(second)
    tokenizer.save_pretrained(second)
    dataset = root / "data" / "factoids.jsonl"
    dataset.parent.mkdir(parents=True, exist_ok=True)
    dataset.write_text("".join(json.dumps(f) + "\n" for f in first_set))
    return FactoidVersions(first, second, dataset)


def _knows(model, tokenizer, items: list[dict]) -> int:
    from worker.engine.retention import grade

    model.eval()
    answers = greedy_generate(
        model, tokenizer, [f["question"] for f in items], max_new_tokens=8, chat="never"
    )
    return sum(grade(a, f["answer"]) for a, f in zip(answers, items, strict=True))
