from __future__ import annotations

import json
import os
import shutil

import pytest
import torch

from core.inspection.errors import ModelError
from core.inspection.models import resolve_model
from worker.loaders.models import cached_causal_lm


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


def _pickled_copy(tiny_lm, tmp_path):
    """The demo model with its weights as a torch.save pickle instead of safetensors."""
    from safetensors.torch import load_file

    copy = tmp_path / "pickled"
    shutil.copytree(tiny_lm.model_dir, copy)
    torch.save(load_file(copy / "model.safetensors"), copy / "pytorch_model.bin")
    (copy / "model.safetensors").unlink()
    return copy


def test_pickled_weights_load_only_when_allowed_and_score_the_same(tiny_lm, tmp_path) -> None:
    copy = _pickled_copy(tiny_lm, tmp_path)
    with pytest.raises(ModelError, match="MEMAUDIT_ALLOW_PICKLE_WEIGHTS"):
        resolve_model(f"path:{copy}", [tmp_path])
    spec = resolve_model(f"path:{copy}", [tmp_path], allow_pickle=True)
    assert spec.pickled
    pickled = cached_causal_lm(spec)
    original = cached_causal_lm(resolve_model(f"path:{tiny_lm.model_dir}", [tiny_lm.model_dir]))
    ids = torch.tensor([original.encode("the canary sings a secret number 4711")])
    with torch.inference_mode():
        assert torch.equal(pickled.model(ids).logits, original.model(ids).logits)


class _RunsCode:
    """Unpickling this object would run a shell command (the classic malicious checkpoint)."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_a_pickle_that_would_run_code_is_refused_without_running(tiny_lm, tmp_path) -> None:
    copy = _pickled_copy(tiny_lm, tmp_path)
    marker = tmp_path / "pwned"
    torch.save({"transformer.wte.weight": _RunsCode(marker)}, copy / "pytorch_model.bin")
    spec = resolve_model(f"path:{copy}", [tmp_path], allow_pickle=True)
    with pytest.raises(ModelError, match=r"weights_only=True\) refused it"):
        cached_causal_lm(spec)
    assert not marker.exists()
    # The same file through plain pickle would have run the command: the test can fail.
    import pickle

    pickle.loads(pickle.dumps(_RunsCode(marker)))
    assert marker.exists()


def test_links_and_dot_dot_out_of_the_root_are_refused(tiny_lm, tmp_path) -> None:
    root = tmp_path / "root"
    root.mkdir()
    os.symlink(tiny_lm.model_dir, root / "linked")  # a link inside the root to a model outside
    dot_dot = f"{root}/{os.path.relpath(tiny_lm.model_dir, root)}"
    assert "/../" in dot_dot
    for uri in [f"path:{root / 'linked'}", f"path:{dot_dot}"]:
        with pytest.raises(ModelError, match="outside"):
            resolve_model(uri, [root])


def test_the_worker_checks_again_at_load(tiny_lm, tmp_path) -> None:
    """Checked at submit, then a file is swapped for a link out of the root: the load refuses."""
    root = tmp_path / "root"
    shutil.copytree(tiny_lm.model_dir, root / "m")
    spec = resolve_model(f"path:{root / 'm'}", [root])
    (tmp_path / "outside.json").write_text((root / "m" / "config.json").read_text())
    (root / "m" / "config.json").unlink()
    os.symlink(tmp_path / "outside.json", root / "m" / "config.json")
    with pytest.raises(ModelError, match=r"config\.json is a link that leads outside"):
        cached_causal_lm(spec)
