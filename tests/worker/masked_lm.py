"""A tiny BERT-style masked LM trained on the spot (seconds), saved like a user's model: the
neighbourhood attack's word swaps in tests, nothing downloaded."""

from __future__ import annotations

import random
import re
from pathlib import Path

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _vocab(texts: list[str]) -> list[str]:
    """Every lowercased word and punctuation mark of the texts, and every character alone and
    as a `##` continuation, so that any text of these characters tokenizes."""
    words = sorted({w for t in texts for w in re.findall(r"\w+|[^\w\s]", t.lower())})
    chars = sorted({c for t in texts for c in t.lower() if not c.isspace()})
    return list(dict.fromkeys(SPECIALS + chars + [f"##{c}" for c in chars] + words))


def build_masked_lm(model_dir: Path, texts: list[str], *, steps: int = 60, seed: int = 0) -> Path:
    """Train a 2-layer BertForMaskedLM with 15% masking on `texts`; save it (safetensors and a
    fast tokenizer) in `model_dir`."""
    import torch
    from transformers import BertConfig, BertForMaskedLM, BertTokenizerFast

    model_dir.mkdir(parents=True, exist_ok=True)
    vocab_file = model_dir / "vocab.txt"
    vocab_file.write_text("\n".join(_vocab(texts)) + "\n")
    tokenizer = BertTokenizerFast(str(vocab_file), do_lower_case=True)
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        max_position_embeddings=128,
    )
    model = BertForMaskedLM(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    rng = random.Random(seed)
    model.train()
    for _ in range(steps):
        batch = tokenizer(
            rng.sample(texts, min(16, len(texts))),
            padding=True,
            truncation=True,
            max_length=128,
            return_tensors="pt",
        )
        labels = batch.input_ids.clone()
        chosen = (torch.rand(labels.shape) < 0.15) & (batch.attention_mask == 1)
        labels[~chosen] = -100
        inputs = batch.input_ids.clone()
        inputs[chosen] = tokenizer.mask_token_id
        loss = model(input_ids=inputs, attention_mask=batch.attention_mask, labels=labels).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.eval()
    model.save_pretrained(model_dir)
    tokenizer.save_pretrained(model_dir)
    return model_dir
