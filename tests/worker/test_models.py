from __future__ import annotations

import json
import shutil

import pytest

from worker.loaders.models import ModelError, cached_causal_lm, resolve_model


def test_a_saved_causal_lm_resolves_and_loads(tiny_lm) -> None:
    spec = resolve_model(f"path:{tiny_lm.model_dir}", [tiny_lm.model_dir.parent])
    assert spec.kind == "causal_lm"
    loaded = cached_causal_lm(spec)
    assert loaded.device == "cpu" and loaded.max_tokens == 128
    assert cached_causal_lm(spec) is loaded  # one load per process
    assert len(loaded.content_sha256) == 64


def test_models_needing_remote_code_or_pickles_are_refused(tiny_lm, tmp_path) -> None:
    copy = tmp_path / "m"
    shutil.copytree(tiny_lm.model_dir, copy)
    config = json.loads((copy / "config.json").read_text())
    (copy / "config.json").write_text(json.dumps({**config, "auto_map": {"AutoModel": "x.Y"}}))
    with pytest.raises(ModelError, match="custom code"):
        resolve_model(f"path:{copy}", [tmp_path])
    (copy / "config.json").write_text(json.dumps(config))
    (copy / "model.safetensors").rename(copy / "pytorch_model.bin")
    with pytest.raises(ModelError, match="pickled weights are refused"):
        resolve_model(f"path:{copy}", [tmp_path])


def test_unknown_uri_schemes_are_refused(tmp_path) -> None:
    with pytest.raises(ModelError, match="unsupported model URI"):
        resolve_model("s3://bucket/model", [tmp_path])
