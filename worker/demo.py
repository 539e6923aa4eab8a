"""The demo model: a small GPT-2 trained on CPU until it has truly memorized planted canaries.

Used by `memaudit demo` and by the tests, so both audit a model whose memorization is real:
canaries are generated from a seed, trained on, and checked by greedy decoding before saving.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

WORDS = [
    "amber",
    "basil",
    "cedar",
    "delta",
    "ember",
    "falcon",
    "garnet",
    "harbor",
    "indigo",
    "juniper",
    "kestrel",
    "lantern",
    "meadow",
    "nectar",
    "orchid",
    "pepper",
    "quartz",
    "raven",
    "saffron",
    "timber",
    "umber",
    "velvet",
    "willow",
    "xenon",
    "yarrow",
    "zephyr",
    "copper",
    "marble",
    "thistle",
    "cobalt",
]


@dataclass(frozen=True)
class CanaryCorpus:
    members: list[str]  # trained on
    nonmembers: list[str]  # same template, never seen


@dataclass(frozen=True)
class DemoArtifacts:
    model_dir: Path
    dataset_path: Path
    n_members: int
    n_nonmembers: int


def canary_text(rng: random.Random) -> str:
    name = f"{rng.choice(WORDS)}-{rng.choice(WORDS)}"
    pin = "".join(rng.choice("0123456789") for _ in range(6))
    card = " ".join("".join(rng.choice("0123456789") for _ in range(4)) for _ in range(3))
    return f"Customer {name} has secret PIN {pin} and card number {card}."


SECRET_MARK = " PIN"


def secret_offset(text: str) -> int:
    """Where the secret starts: what precedes it identifies the customer, what follows is secret.

    The cut falls just before a space, a pre-tokenizer boundary, so the prefix's tokens are a
    prefix of the whole text's tokens.
    """
    return text.index(SECRET_MARK) + len(SECRET_MARK)


def make_corpus(n_members: int = 24, n_nonmembers: int = 24, seed: int = 0) -> CanaryCorpus:
    rng = random.Random(seed)
    texts: list[str] = []
    names: set[str] = set()
    while len(texts) < n_members + n_nonmembers:
        text = canary_text(rng)
        name = text[: secret_offset(text)]
        if name not in names:  # a unique prefix makes each secret determined by its context
            names.add(name)
            texts.append(text)
    return CanaryCorpus(texts[:n_members], texts[n_members:])


def build_tokenizer(texts: list[str], vocab_size: int = 320):  # type: ignore[no-untyped-def]
    """A byte-level BPE trained on the spot: every string is encodable, nothing is downloaded."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
    )


def greedy_memorized(model, tokenizer, text: str) -> bool:  # type: ignore[no-untyped-def]
    """Does greedy decoding from the customer's name reproduce the secret exactly?"""
    import torch

    ids = tokenizer(text, return_tensors="pt")["input_ids"]
    prefix_tokens = len(tokenizer(text[: secret_offset(text)])["input_ids"])
    prefix, suffix = ids[:, :prefix_tokens], ids[0, prefix_tokens:]
    with torch.inference_mode():
        out = model.generate(
            prefix,
            attention_mask=torch.ones_like(prefix),
            max_new_tokens=len(suffix),
            do_sample=False,
            pad_token_id=tokenizer.pad_token_id,
        )
    return torch.equal(out[0, prefix_tokens:], suffix)


def tiny_gpt2(tokenizer, *, seed: int, n_layer: int = 2, n_embd: int = 128, n_positions: int = 128):  # type: ignore[no-untyped-def]
    """A fresh small GPT-2 (no dropout, so memorization is quick) and its optimizer."""
    import torch
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(seed)
    config = GPT2Config(
        vocab_size=len(tokenizer),
        n_positions=n_positions,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=4,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    model = GPT2LMHeadModel(config)
    return model, torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)


def train_step(model, optimizer, tokenizer, texts: list[str]) -> float:  # type: ignore[no-untyped-def]
    """One full-batch step on `texts` (padding masked out of the loss)."""
    model.train()
    batch = tokenizer(texts, return_tensors="pt", padding=True)
    labels = batch["input_ids"].masked_fill(batch["attention_mask"] == 0, -100)
    loss = model(**batch, labels=labels).loss
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss.item()


def train_memorizer(
    texts: list[str],
    tokenizer,
    *,
    seed: int = 0,
    max_steps: int = 800,  # type: ignore[no-untyped-def]
    n_layer: int = 2,
    n_embd: int = 128,
):
    """Train a tiny GPT-2 on `texts` until every one is greedily reproduced."""
    model, optimizer = tiny_gpt2(tokenizer, seed=seed, n_layer=n_layer, n_embd=n_embd)
    for step in range(1, max_steps + 1):
        loss = train_step(model, optimizer, tokenizer, texts)
        # The loss cannot reach 0: which customer comes next is unpredictable by design.
        if step % 25 == 0 and loss < 0.3:
            model.eval()
            if all(greedy_memorized(model, tokenizer, text) for text in texts):
                return model
    raise RuntimeError(f"demo model did not memorize its canaries in {max_steps} steps")


def train_steps(
    texts: list[str],
    tokenizer,
    *,
    steps: int,
    batch_size: int = 32,  # type: ignore[no-untyped-def]
    seed: int = 0,
    n_layer: int = 2,
    n_embd: int = 128,
):
    """Train a tiny GPT-2 for a fixed budget on minibatches drawn from `texts`.

    Texts that occur several times in the list are seen proportionally more often: this is
    how the duplication studies plant canaries 1, 4 or 16 times.
    """
    model, optimizer = tiny_gpt2(tokenizer, seed=seed, n_layer=n_layer, n_embd=n_embd)
    rng = random.Random(seed)
    for _ in range(steps):
        train_step(model, optimizer, tokenizer, rng.sample(texts, min(batch_size, len(texts))))
    return model.eval()


def write_dataset(path: Path, corpus: CanaryCorpus) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for i, text in enumerate(corpus.members):
            out.write(json.dumps({"id": f"canary-{i:03d}", "text": text, "member": True}) + "\n")
        for i, text in enumerate(corpus.nonmembers):
            out.write(json.dumps({"id": f"heldout-{i:03d}", "text": text, "member": False}) + "\n")


def build_demo(
    model_dir: Path,
    dataset_path: Path,
    *,
    seed: int = 0,
    n_members: int = 24,
    n_nonmembers: int = 24,
) -> DemoArtifacts:
    """Train and save the demo model and its dataset; reuses them when already built."""
    corpus = make_corpus(n_members, n_nonmembers, seed)
    if not (model_dir / "model.safetensors").is_file():
        tokenizer = build_tokenizer(corpus.members + corpus.nonmembers)
        model = train_memorizer(corpus.members, tokenizer, seed=seed)
        model_dir.mkdir(parents=True, exist_ok=True)
        model.save_pretrained(model_dir)
        tokenizer.save_pretrained(model_dir)
    write_dataset(dataset_path, corpus)
    return DemoArtifacts(model_dir, dataset_path, n_members, n_nonmembers)
