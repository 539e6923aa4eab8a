"""The finetune kind on a tiny base trained here, its full fine-tune and a LoRA adapter, both of
which memorized member canaries the base never saw.

The one-pass LoRA path uses peft's mixed-batch forward (`adapter_names`, "__base__" for the
base rows), read in huggingface/peft v0.21.2 `src/peft/tuners/lora/model.py`
(`_enable_peft_forward_hooks`) and `src/peft/tuners/lora/layer.py` (`_mixed_batch_forward`).
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from core.check_kinds import SubmitContext
from core.inspection.errors import ModelError
from core.inspection.models import resolve_model
from core.inspection.tokenizers import check_same_tokenizer
from tests.worker.checks.lm.finetune_models import FinetuneModels, build_finetunes
from worker.access import PermanentError
from worker.checks.lm.finetune import FINETUNE
from worker.engine.finetune import score_rows, score_rows_paired
from worker.loaders.models import ADAPTER_NAME, cached_adapter_lm
from worker.local import audit_texts, load_local, local_spec

PARAMS = {"prefix_tokens": 6, "suffix_tokens": 6, "stride": 2, "bootstrap": 200}


@pytest.fixture(scope="module")
def finetunes(tmp_path_factory: pytest.TempPathFactory) -> FinetuneModels:
    return build_finetunes(tmp_path_factory.mktemp("finetunes"))


def _records(models: FinetuneModels) -> list[dict]:
    return [{"id": f"m{i}", "text": t, "member": True} for i, t in enumerate(models.members)] + [
        {"id": f"n{i}", "text": t, "member": False} for i, t in enumerate(models.nonmembers)
    ]


def _audit(target: Path, base: Path, records: list[dict]) -> dict:
    result = audit_texts(
        target, records, [{"kind": "finetune", "params": PARAMS}], reference_model=base
    )
    return result["finetune"]


@pytest.mark.parametrize("which", ["full", "adapter"])
def test_canaries_extractable_from_the_finetune_not_the_base(
    finetunes: FinetuneModels, which: str
) -> None:
    found = _audit(getattr(finetunes, which), finetunes.base, _records(finetunes))
    summary, samples = found["summary"], found["samples"]
    assert summary["pass"].startswith("one mixed-batch" if which == "adapter" else "two passes")
    counts = summary["extraction"]
    # The fine-tune memorized every member canary; the base never saw one, nor any non-member.
    assert counts["members"]["target_not_base"] >= 0.75 * counts["members"]["n"]
    assert counts["nonmembers"]["target_not_base"] == 0
    assert counts["all"]["target_not_base"] == len(summary["target_not_base"])
    flagged = {row["id"] for row in summary["target_not_base"]}
    assert flagged and all(name.startswith("m") for name in flagged)
    for row in summary["target_not_base"]:
        assert row["target_extracted"] and not row["base_extracted"]
    # Min-K% over Δℓ (and mean Δℓ) separate the fine-tune's members from non-members.
    assert summary["scores"]["mink_delta_0.2"]["auroc"]["value"] >= 0.95
    assert summary["scores"]["mean_delta"]["auroc"]["value"] >= 0.95
    member = next(s for s in samples if s["member"])
    assert len(member["token_delta"]) == member["n_scored"]
    assert member["mean_delta"] == pytest.approx(np.mean(member["token_delta"]), abs=1e-3)


def test_one_pass_lora_equals_two_separate_passes(finetunes: FinetuneModels) -> None:
    base = load_local(finetunes.base)
    adapted = cached_adapter_lm(local_spec(finetunes.adapter), base)
    rows = [base.special_prefix + base.encode(t) for t in finetunes.members + finetunes.nonmembers]
    target, under_base = score_rows_paired(adapted.peft, rows, base.device, 8, ADAPTER_NAME)
    alone_target = score_rows(adapted.model, rows, base.device, 8)
    alone_base = score_rows(base.model, rows, base.device, 8)
    for one, two in [(target, alone_target), (under_base, alone_base)]:
        for a, b in zip(one, two, strict=True):
            np.testing.assert_allclose(a.logprobs, b.logprobs, atol=1e-4)
            assert (a.top1 == b.top1).all()
    # The adapter changed the target and left the cached base (the reference model) bare.
    gains = [np.abs(a.logprobs - b.logprobs).max() for a, b in zip(target, under_base, strict=True)]
    assert max(gains) > 1
    assert not any("lora" in name for name, _ in base.model.named_modules())


def test_small_token_budget_and_head_chunks_bound_the_logits(
    finetunes: FinetuneModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No (rows, T, V) logits: a small token budget cuts the rows into several forwards and
    the head runs over chunks of at most a few positions, with the values of one plain
    forward's full logits."""
    import torch

    import worker.engine.head_stats as head_stats

    base = load_local(finetunes.base)
    adapted = cached_adapter_lm(local_spec(finetunes.adapter), base)
    rows = [base.special_prefix + base.encode(t) for t in finetunes.members + finetunes.nonmembers]
    widest: list[int] = []
    real = head_stats.final_logits

    def recorded(model, hidden):
        logits = real(model, hidden)
        widest.append(logits.shape[0])
        return logits

    monkeypatch.setattr(head_stats, "final_logits", recorded)
    vocab = base.model.get_output_embeddings().weight.shape[0]
    small = {"max_batch_tokens": 2 * max(len(r) for r in rows), "head_chunk_bytes": 4 * vocab * 5}
    target, under_base = score_rows_paired(
        adapted.peft, rows, base.device, 8, ADAPTER_NAME, **small
    )
    alone = score_rows(base.model, rows, base.device, 8, **small)
    assert widest and max(widest) <= 5
    calls = len(widest)
    assert calls > 2 * sum(len(r) - 1 for r in rows) / 5 - 1  # many chunks, not one
    for model, found in [(adapted.model, target), (base.model, under_base), (base.model, alone)]:
        for row, scores in zip(rows, found, strict=True):
            with torch.inference_mode():
                logits = model(input_ids=torch.tensor([row])).logits[0, :-1].float()
            expected = logits.log_softmax(-1)[torch.arange(len(row) - 1), row[1:]]
            np.testing.assert_allclose(scores.logprobs, expected.numpy(), atol=1e-4)
            assert (scores.top1 == (logits.argmax(-1) == torch.tensor(row[1:])).numpy()).all()


def test_an_adapter_with_pickled_weights_is_refused(
    finetunes: FinetuneModels, tmp_path: Path
) -> None:
    bad = tmp_path / "adapter"
    shutil.copytree(finetunes.adapter, bad)
    (bad / "adapter_model.bin").write_bytes(b"not unpickled")  # never read
    with pytest.raises(ModelError, match="pickled adapter weights"):
        resolve_model(f"path:{bad}", [tmp_path], allow_pickle=True)
    (bad / "adapter_model.bin").unlink()
    (bad / "adapter_model.safetensors").unlink()
    with pytest.raises(ModelError, match=r"no adapter_model\.safetensors"):
        resolve_model(f"path:{bad}", [tmp_path])
    spec = resolve_model(f"path:{finetunes.adapter}", [finetunes.adapter.parent])
    assert (spec.kind, spec.format) == ("causal_lm", "peft_lora")


def test_a_base_with_another_tokenizer_is_refused(
    finetunes: FinetuneModels, tmp_path: Path
) -> None:
    from worker.demo import build_tokenizer

    other = tmp_path / "other-base"
    shutil.copytree(finetunes.base, other)
    build_tokenizer(["quite different text 0123456789"] * 4, vocab_size=300).save_pretrained(other)
    root = [finetunes.base.parent, tmp_path]
    # At submit: the kind's validation reads both tokenizers (a 422 in the service).
    context = SubmitContext(
        has_reference_model=True,
        compare_tokenizers=lambda: check_same_tokenizer(
            f"path:{finetunes.full}", f"path:{other}", root
        ),
    )
    params = FINETUNE.parse_params(PARAMS)
    with pytest.raises(ValueError, match="tokenizes differently"):
        FINETUNE.validate(params, context)
    check_same_tokenizer(f"path:{finetunes.full}", f"path:{finetunes.base}", root)  # same: fine
    with pytest.raises(ValueError, match="reference_model"):
        FINETUNE.validate(params, SubmitContext(has_reference_model=False))
    # In a worker (a local audit has no submit step): refused before any pass.
    with pytest.raises(PermanentError, match="tokenizes differently"):
        _audit(finetunes.full, other, _records(finetunes)[:2])


def test_every_lm_check_audits_an_adapter_target_with_the_adapter_on(
    finetunes: FinetuneModels,
) -> None:
    records = _records(finetunes)
    checks = [{"kind": "loss", "params": {}}, {"kind": "finetune", "params": PARAMS}]
    found = audit_texts(finetunes.adapter, records, checks, reference_model=finetunes.base)
    base = audit_texts(finetunes.base, records, [{"kind": "loss", "params": {}}])
    adapter_loss = [s["loss"] for s in found["loss"]["samples"]]
    base_loss = [s["loss"] for s in base["loss"]["samples"]]
    # Members: the adapter learned them; and each loss is the negated mean target ℓ that the
    # finetune pass found (both start at the first text token after BOS).
    for i, sample in enumerate(found["finetune"]["samples"][: len(finetunes.members)]):
        assert adapter_loss[i] < base_loss[i] - 1
        gained = base_loss[i] - adapter_loss[i]
        assert sample["mean_delta"] == pytest.approx(gained, abs=1e-4)
