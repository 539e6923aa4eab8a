"""A LoRA adapter sits on the cached base model, which is also the audit's reference model: an
adapter file must never change that base, and a cached adapter must never outlive its base."""

from __future__ import annotations

import copy
import gc
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file

from core.inspection.errors import ModelError
from core.inspection.models import resolve_model
from worker.demo import build_tokenizer, make_corpus, tiny_gpt2
from worker.loaders import models as M

PLANTED = "base_model.model.transformer.wte.weight"


@pytest.fixture(scope="module")
def tiny_adapter(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained tiny base and a LoRA adapter on it (seconds)."""
    from peft import LoraConfig, get_peft_model

    root = tmp_path_factory.mktemp("adapter")
    corpus = make_corpus(8, 8, seed=1)
    tokenizer = build_tokenizer(corpus.members + corpus.nonmembers)
    base, _ = tiny_gpt2(tokenizer, seed=0)
    base.save_pretrained(root / "base")
    tokenizer.save_pretrained(root / "base")
    config = LoraConfig(r=4, target_modules=["c_attn"], fan_in_fan_out=True, task_type="CAUSAL_LM")
    adapter = get_peft_model(copy.deepcopy(base), config)
    for name, param in adapter.named_parameters():
        if "lora_B" in name:  # peft starts B at zero: give the adapter an effect
            torch.nn.init.normal_(param, std=0.5)
    adapter.save_pretrained(root / "adapter")
    return root


def _plant(adapter: Path) -> None:
    """Puts a base weight (zeros for the embedding) into the adapter's safetensors."""
    file = adapter / "adapter_model.safetensors"
    state = load_file(file)
    wte = load_file(adapter.parent / "base" / "model.safetensors")["transformer.wte.weight"]
    state[PLANTED] = torch.zeros_like(wte)
    save_file(state, file)


def _copy(src: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(src, dst)
    return dst


def test_an_adapter_carrying_a_base_weight_is_refused_at_resolve(
    tiny_adapter: Path, tmp_path: Path
) -> None:
    _copy(tiny_adapter / "base", tmp_path / "base")
    bad = _copy(tiny_adapter / "adapter", tmp_path / "adapter")
    _plant(bad)
    with pytest.raises(ModelError, match=r"not LoRA weights.*transformer\.wte\.weight"):
        resolve_model(f"path:{bad}", [tmp_path])


def test_modules_to_save_are_allowed_only_when_declared() -> None:
    from core.inspection.adapters import foreign_tensors

    names = [
        "base_model.model.transformer.h.0.attn.c_attn.lora_A.weight",
        "base_model.model.transformer.h.0.attn.c_attn.lora_B.weight",
        "base_model.model.transformer.wte.lora_embedding_A",
        "base_model.model.lm_head.weight",
    ]
    assert foreign_tensors(names, {}) == ["base_model.model.lm_head.weight"]
    assert foreign_tensors(names, {"modules_to_save": ["lm_head"]}) == []
    assert foreign_tensors(["base_model.model.transformer.wte.weight"], {"modules_to_save": ["te"]})


def test_an_adapter_changed_after_resolve_never_alters_the_cached_base(
    tiny_adapter: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The file passes resolve, then gains a base weight before the worker loads it: the load
    refuses it, and the cached base (the reference model) keeps its weights."""
    root = tmp_path
    base_dir = _copy(tiny_adapter / "base", root / "base")
    adapter_dir = _copy(tiny_adapter / "adapter", root / "adapter")
    base_spec = resolve_model(f"path:{base_dir}", [root])
    adapter_spec = resolve_model(f"path:{adapter_dir}", [root])
    _plant(adapter_dir)
    base = M.cached_causal_lm(base_spec)
    before = {k: v.detach().clone() for k, v in base.model.state_dict().items()}
    with pytest.raises(ModelError, match="not LoRA weights"):
        M.cached_adapter_lm(adapter_spec, base)
    for name, value in base.model.state_dict().items():
        assert torch.equal(value, before[name]), name
    assert M.cached_causal_lm(base_spec) is base
    # Past both header checks (a file swapped between check and read): the version counters
    # see the write, and the altered base leaves the cache, so no later audit gets it.
    monkeypatch.setattr(M, "_check_adapter_file", lambda path, config: None)
    with pytest.raises(ModelError, match="wrote into the reference model"):
        M.load_adapter_lm(adapter_spec, base)
    reloaded = M.cached_causal_lm(base_spec)
    assert reloaded is not base
    for name, value in reloaded.model.state_dict().items():
        assert torch.equal(value, before[name]), name


def test_the_adapter_cache_follows_the_base_not_its_id(tiny_adapter: Path, tmp_path: Path) -> None:
    root = tmp_path
    base_dir = _copy(tiny_adapter / "base", root / "base")
    other_dir = _copy(tiny_adapter / "base", root / "other")
    state = load_file(other_dir / "model.safetensors")
    save_file({k: v + 1.0 for k, v in state.items()}, other_dir / "model.safetensors")
    adapter_dir = _copy(tiny_adapter / "adapter", root / "adapter")
    spec1 = resolve_model(f"path:{base_dir}", [root])
    spec2 = resolve_model(f"path:{other_dir}", [root])
    adapter_spec = resolve_model(f"path:{adapter_dir}", [root])
    M._causal_lms.models.clear()
    M._adapter_lms.clear()
    base1 = M.cached_causal_lm(spec1)
    first = M.cached_adapter_lm(adapter_spec, base1)
    # Another base of the same shape, whatever its id: a fresh adapter on that base.
    base2 = M.cached_causal_lm(spec2)
    second = M.cached_adapter_lm(adapter_spec, base2)
    assert second is not first
    assert second.model.transformer.wte.weight is base2.model.transformer.wte.weight
    # A third base evicts the first (the cache holds two): its adapter goes with it.
    third_dir = _copy(tiny_adapter / "base", root / "third")
    M.cached_adapter_lm(adapter_spec, base1)
    assert any(on is base1 for on, _ in M._adapter_lms.values())
    M.cached_causal_lm(resolve_model(f"path:{third_dir}", [root]))
    assert not any(on is base1 for on, _ in M._adapter_lms.values())
    # The same files loaded again (a new object, maybe the old id): not the old adapter.
    M._causal_lms.models.clear()
    del base1
    gc.collect()
    again = M.cached_causal_lm(spec1)
    assert M.cached_adapter_lm(adapter_spec, again).model.transformer.wte.weight is (
        again.model.transformer.wte.weight
    )
