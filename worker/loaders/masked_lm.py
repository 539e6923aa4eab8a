"""Masked LMs (BERT-style) loaded for the neighbourhood attack's word swaps: a `path:` model
beneath the audit's model roots, safetensors only, a fast tokenizer (its offsets place each
swap in the text), never remote code; cached per worker process like the other loaders."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from core.inspection.errors import ModelError
from core.inspection.models import ModelSpec
from worker.loaders.models import ModelCache, explained_load, pick_device

MASKED_LM_KIND = "masked_lm"


@dataclass
class LoadedMaskedLM:
    spec: ModelSpec
    model: Any  # transformers *ForMaskedLM
    tokenizer: Any  # a fast tokenizer
    device: str

    @property
    def max_length(self) -> int:
        return int(getattr(self.model.config, "max_position_embeddings", 512))


def _load(spec: ModelSpec) -> LoadedMaskedLM:
    from transformers import AutoModelForMaskedLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()
    if spec.kind != MASKED_LM_KIND or spec.gguf_file or spec.pickled:
        raise ModelError(
            f"{spec.uri} is a {spec.kind} model; neighbour_model needs a masked LM "
            "(a *ForMaskedLM architecture) with safetensors weights"
        )
    device, _ = pick_device()
    common: dict[str, Any] = {"local_files_only": True, "trust_remote_code": False}
    tokenizer = AutoTokenizer.from_pretrained(spec.tokenizer_path or spec.path, **common)
    if not tokenizer.is_fast:
        raise ModelError(f"{spec.uri}: its tokenizer has no fast form to give offsets")
    model = AutoModelForMaskedLM.from_pretrained(spec.path, use_safetensors=True, **common)
    model.to(device).eval()  # float32: the swaps are chosen from its probabilities
    return LoadedMaskedLM(spec, model, tokenizer, device)


_masked_lms: ModelCache[LoadedMaskedLM] = ModelCache(lambda s: explained_load(s, _load), 1)


def cached_masked_lm(spec: ModelSpec) -> LoadedMaskedLM:
    """The masked LM `spec` names (resolved through the audit's grants, `Access.spec`)."""
    return _masked_lms.get(spec)
