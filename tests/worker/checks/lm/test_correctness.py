"""The engine against the slow ways it replaces: generate() decoding and Monte Carlo sampling.

Real models trained here: the canary model (memorized) and a model trained on canaries planted
1, 4 and 16 times for a fixed budget.
"""

from __future__ import annotations

import math
import random

import pytest
import torch

from worker.demo import build_tokenizer, canary_text, make_corpus, train_steps
from worker.loaders.models import LoadedModel
from worker.local import audit_texts, load_local

pytestmark = pytest.mark.slow
PREFIX, SUFFIX = 10, 16
# Positions whose top-1 margin is below this are near-ties that batching or a KV cache may
# flip (METRICS.md §12); they are excluded from the exact-agreement test and counted.
NEAR_TIE = 1e-4


@pytest.fixture(scope="module")
def canary_lm(tiny_lm) -> LoadedModel:
    return load_local(tiny_lm.model_dir)


def _texts(tiny_lm, n: int) -> list[dict]:
    corpus = make_corpus(tiny_lm.n_members, tiny_lm.n_nonmembers)
    rng = random.Random(99)
    extra = [canary_text(rng) for _ in range(n - len(corpus.members) - len(corpus.nonmembers))]
    return [{"text": t, "member": True} for t in corpus.members] + [
        {"text": t, "member": False} for t in corpus.nonmembers + extra
    ]


def _generate(lm: LoadedModel, prefix: list[int], **kwargs) -> torch.Tensor:
    input_ids = torch.tensor([prefix])
    with torch.inference_mode():
        out = lm.model.generate(
            input_ids,
            attention_mask=torch.ones_like(input_ids),
            max_new_tokens=SUFFIX,
            pad_token_id=lm.tokenizer.pad_token_id,
            **kwargs,
        )
    return out[:, len(prefix) :]


def test_teacher_forced_greedy_agrees_with_generate(canary_lm, tiny_lm) -> None:
    records = _texts(tiny_lm, 200)
    result = audit_texts(
        canary_lm,
        records,
        [
            {
                "kind": "extraction",
                "params": {
                    "prefix_tokens": PREFIX,
                    "suffix_tokens": SUFFIX,
                    "schemes": [{"temperature": 0}],
                },
            }
        ],
    )
    compared = near_ties = 0
    for record, values in zip(records, result["extraction"]["samples"], strict=True):
        assert not values.get("skipped"), values
        ids = canary_lm.encode(record["text"])
        generated = _generate(canary_lm, ids[:PREFIX], do_sample=False)[0].tolist()
        truth = ids[PREFIX : PREFIX + SUFFIX]
        matched = next(
            (i for i, (g, t) in enumerate(zip(generated, truth, strict=False)) if g != t),
            min(len(generated), SUFFIX),
        )
        if abs(values["min_margin"]) < NEAR_TIE and not values["greedy_extracted"]:
            near_ties += 1
            continue
        compared += 1
        assert values["greedy_extracted"] == (generated == truth), record
        assert values["match_prefix_len"] == matched, record
        assert (values["log10_pz"]["greedy"] == 0.0) == values["greedy_extracted"]  # fact 5
    assert compared >= 200 - near_ties and near_ties <= 10
    rates = result["extraction"]["summary"]
    assert rates["members"]["greedy_rate"] > 0.5 > rates["nonmembers"]["greedy_rate"]


SCHEMES = [
    {"temperature": 1.0, "top_k": 40},
    {"temperature": 1.4},  # pure temperature: top_k must be 0, not HF's default 50
    {"temperature": 0.8, "top_p": 0.9},
    {"temperature": 1.2, "top_k": 5, "top_p": 0.8},
]


@pytest.mark.parametrize("scheme", SCHEMES, ids=lambda s: "_".join(f"{k}{v}" for k, v in s.items()))
def test_exact_pz_agrees_with_monte_carlo(canary_lm, tiny_lm, scheme) -> None:
    n_samples, suffix = 3000, 6
    records = _texts(tiny_lm, 80)
    params = {"prefix_tokens": PREFIX, "suffix_tokens": suffix, "schemes": [scheme]}
    result = audit_texts(canary_lm, records, [{"kind": "extraction", "params": params}])
    name = result["extraction"]["summary"]["schemes"][0]
    candidates = [
        (record, 10 ** v["log10_pz"][name])
        for record, v in zip(records, result["extraction"]["samples"], strict=True)
        if v["log10_pz"][name] is not None and 0.05 < 10 ** v["log10_pz"][name] < 0.95
    ]
    assert len(candidates) >= 2, "no sequence with p_z in (0.05, 0.95) for this scheme"
    torch.manual_seed(0)
    for record, p_z in candidates[:3]:
        ids = canary_lm.encode(record["text"])
        input_ids = torch.tensor([ids[:PREFIX]])
        with torch.inference_mode():
            out = canary_lm.model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                do_sample=True,
                max_new_tokens=suffix,
                min_new_tokens=suffix,
                num_return_sequences=n_samples,
                temperature=scheme["temperature"],
                top_k=scheme.get("top_k", 0),
                top_p=scheme.get("top_p", 1.0),
                pad_token_id=canary_lm.tokenizer.pad_token_id,
            )
        truth = torch.tensor(ids[PREFIX : PREFIX + suffix])
        frequency = (out[:, PREFIX:] == truth).all(dim=1).float().mean().item()
        standard_error = math.sqrt(p_z * (1 - p_z) / n_samples)
        assert abs(frequency - p_z) <= 4 * standard_error, (record["text"], frequency, p_z)


def test_duplication_raises_extraction_and_members_separate(tiny_lm) -> None:
    corpus = make_corpus(48, 24, seed=5)
    groups = {1: corpus.members[:16], 4: corpus.members[16:32], 16: corpus.members[32:]}
    planted = [text for copies, texts in groups.items() for text in texts for _ in range(copies)]
    tokenizer = build_tokenizer(corpus.members + corpus.nonmembers)
    model = train_steps(planted, tokenizer, steps=150, batch_size=32, seed=0)
    lm = LoadedModel(
        spec=None,
        model=model,
        tokenizer=tokenizer,
        device="cpu",
        dtype="torch.float32",
        content_sha256="in-memory",
    )
    records = [
        {"text": t, "member": True, "duplicates": d} for d, ts in groups.items() for t in ts
    ] + [{"text": t, "member": False} for t in corpus.nonmembers]
    result = audit_texts(
        lm,
        records,
        [
            {"kind": "extraction", "params": {"prefix_tokens": PREFIX, "suffix_tokens": 12}},
            {"kind": "membership", "params": {"scores": ["loss"], "bootstrap": 100}},
        ],
    )
    by_dup = result["extraction"]["summary"]["by_duplicates"]
    rates = [by_dup[str(d)]["greedy_rate"] for d in (1, 4, 16)]
    assert rates[0] <= rates[1] <= rates[2] and rates[0] < rates[2], rates
    auroc = result["membership"]["summary"]["scores"]["loss"]["auroc"]["value"]
    assert auroc >= 0.95, auroc
