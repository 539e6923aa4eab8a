"""`cfg_basin` and `cfg_mitigation` through the service on two class-conditional DDPMs trained
here on 8×8 digits: one that memorized one image per class, one trained on all of them."""

from __future__ import annotations

import json

import pytest

from tests.diffusion.builders import N_CLASSES
from tests.flows import all_samples, wait_final

pytestmark = pytest.mark.slow
diffusers = pytest.importorskip("diffusers")
GUIDANCE = 2.0  # a tiny pixel-space model: 7.5 pushes its samples out of the image range


@pytest.fixture(scope="module")
def models(digit_ddpms):  # type: ignore[no-untyped-def]
    return digit_ddpms


def _audit(stack, model, training, checks_params: dict, kind: str) -> dict:
    dataset = model.parent.parent / "data" / f"prompts-{kind}.jsonl"
    dataset.write_text(
        "".join(
            json.dumps({"id": f"digit-{k}", "class_label": k, "memorized": True}) + "\n"
            for k in range(N_CLASSES)
        )
    )
    body = {
        "model": {"uri": f"path:{model}"},
        "dataset": {"uri": f"path:{dataset}"},
        "checks": [
            {
                "kind": kind,
                "params": {
                    "training_images": f"path:{training}",
                    "guidance_scale": GUIDANCE,
                    "seeds": [1, 2],
                    **checks_params,
                },
            }
        ],
    }
    response = stack.client.post("/v1/audits", headers=stack.headers, json=body)
    assert response.status_code == 202, response.text
    return wait_final(stack.client, stack.headers, response.json()["id"], timeout=300)


def test_the_memorizer_sits_in_its_basins_and_the_generalist_does_not(make_stack, models) -> None:
    stack = make_stack(model_roots=str(models.memorizer.parent), data_roots=str(models.few.parent))
    worker = stack.start_worker()
    memorized = _audit(stack, models.memorizer, models.few, {}, "cfg_basin")
    general = _audit(stack, models.generalist, models.many, {}, "cfg_basin")
    assert memorized["status"] == general["status"] == "succeeded", (memorized, worker.tail())
    a, b = memorized["summary"]["cfg_basin"], general["summary"]["cfg_basin"]
    print(
        f"\nmemorizer: Δ {a['mean_detection_score']:.3f}, similarity {a['mean_similarity']:.3f}, "
        f"copies {a['copy_rate']:.2f}; generalist: Δ {b['mean_detection_score']:.3f}, "
        f"similarity {b['mean_similarity']:.3f}, copies {b['copy_rate']:.2f}"
    )
    assert a["mean_detection_score"] > 1.3 * b["mean_detection_score"]
    assert a["mean_similarity"] > 0.9 > b["mean_similarity"]
    assert a["copy_rate"] >= 0.8 and b["copy_rate"] <= 0.3
    rows = all_samples(stack.client, stack.headers, memorized["id"], "cfg_basin")
    copied = [r["values"] for r in rows if r["values"]["copies"]]
    # A copy is of the training image of the class asked for.
    assert all(v["nearest_label"] == v["condition"] for v in copied)
    assert len(a["delta_curves"]["memorized"]) == 50
    assert set(a["exemplars"]) == {e["id"] for e in a["most_similar"]}
    report = stack.client.get(f"/v1/audits/{memorized['id']}/report.html", headers=stack.headers)
    assert report.status_code == 200
    assert "basin-delta" in report.text and "basin-pairs" in report.text

    # A configured embedding: a built-in MLP's hidden layer instead of pixels. A copy is a copy
    # in any embedding, so the memorizer still copies every class.
    import torch

    from worker.loaders.builtin_nets import build, save_builtin

    architecture = {"name": "mlp", "input_dim": 64, "hidden": [32], "n_classes": 10}
    torch.manual_seed(0)
    encoder = save_builtin(models.memorizer.parent / "digit-mlp", architecture, build(architecture))
    embedded = _audit(
        stack, models.memorizer, models.few, {"embedding_model": f"path:{encoder}"}, "cfg_basin"
    )
    assert embedded["status"] == "succeeded", (embedded, worker.tail())
    assert embedded["summary"]["cfg_basin"]["copy_rate"] == 1.0


def test_mitigations_are_compared_on_copying_and_alignment(make_stack, models) -> None:
    stack = make_stack(model_roots=str(models.memorizer.parent), data_roots=str(models.few.parent))
    worker = stack.start_worker()
    audit = _audit(stack, models.memorizer, models.few, {}, "cfg_mitigation")
    assert audit["status"] == "succeeded", (audit, worker.tail())
    methods = audit["summary"]["cfg_mitigation"]["methods"]
    assert set(methods) == {"cfg", "stp", "dtp", "og_dtp"}
    print(
        "\n"
        + ", ".join(
            f"{m}: similarity {e['mean_similarity']:.3f} copies {e['copy_rate']:.2f} "
            f"alignment {e['alignment']:.2f}"
            for m, e in methods.items()
        )
    )
    assert methods["cfg"]["alignment_cost"] == 0
    assert all(len(e["similarities"]) == N_CLASSES for e in methods.values())
    (row, *_) = all_samples(stack.client, stack.headers, audit["id"], "cfg_mitigation")
    record = stack.client.get(
        f"/v1/audits/{audit['id']}/samples/{row['sample_index']}", headers=stack.headers
    ).json()
    runs = record["checks"][0]["detail"]["runs"]
    stp = runs["stp"][0]
    # Static transition at τ = 500: no guidance while t > 500 (DDIM's 50 steps: 980, 960, …).
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=1000)
    scheduler.set_timesteps(50)
    before = sum(int(t) > 500 for t in scheduler.timesteps)
    assert before == 24
    assert stp["scales"] == [0.0] * before + [GUIDANCE] * (50 - before)
    assert stp["transition"] == before
    dtp = runs["dtp"][0]
    fire = dtp["transition"]
    assert dtp["scales"] == [1.0] * fire + [GUIDANCE] * (50 - fire)
    og = runs["og_dtp"][0]
    assert og["scales"][: og["transition"]] == [-GUIDANCE] * og["transition"]
    report = stack.client.get(f"/v1/audits/{audit['id']}/report.html", headers=stack.headers)
    assert "mitigation-similarity" in report.text


def test_diffusion_requests_are_checked(make_stack, models) -> None:
    stack = make_stack(model_roots=str(models.memorizer.parent), data_roots=str(models.few.parent))
    dataset = models.few.parent / "prompts.jsonl"
    dataset.write_text(json.dumps({"class_label": 1}) + "\n")
    body = {
        "model": {"uri": f"path:{models.memorizer}"},
        "dataset": {"uri": f"path:{dataset}"},
        "checks": [{"kind": "loss", "params": {}}],
    }
    wrong_kind = stack.client.post("/v1/audits", headers=stack.headers, json=body)
    assert wrong_kind.status_code == 422
    assert wrong_kind.json()["error"]["code"] == "unsupported_model_kind"
    body["checks"] = [
        {
            "kind": "cfg_mitigation",
            "params": {"training_images": "path:/x.npz", "methods": ["magic"]},
        }
    ]
    unknown = stack.client.post("/v1/audits", headers=stack.headers, json=body)
    assert unknown.status_code == 422 and "magic" in unknown.text
    body["checks"] = [
        {
            "kind": "cfg_basin",
            "params": {
                "training_images": f"path:{models.few}",
                "embedding_model": f"path:{models.memorizer}",
            },
        }
    ]
    not_an_encoder = stack.client.post("/v1/audits", headers=stack.headers, json=body)
    assert not_an_encoder.status_code == 422
    assert "give a classifier or encoder" in not_an_encoder.json()["error"]["message"]


def test_the_memorizer_gives_its_training_images_a_lower_local_dimension(
    make_stack, models
) -> None:
    """FLIPD of both models on the ten images the memorizer saw (the generalist saw them too)."""
    import numpy as np

    stack = make_stack(model_roots=str(models.memorizer.parent), data_roots=str(models.few.parent))
    worker = stack.start_worker()
    labels = np.load(models.few)["y"]
    many_labels = np.load(models.many)["y"]
    first = [int(np.flatnonzero(many_labels == k)[0]) for k in range(N_CLASSES)]
    found = {}
    for name, model, training, indices in [
        ("memorizer", models.memorizer, models.few, list(range(N_CLASSES))),
        ("generalist", models.generalist, models.many, first),
    ]:
        dataset = models.few.parent / f"lid-{name}.jsonl"
        dataset.write_text(
            "".join(
                json.dumps({"id": f"img-{k}", "class_label": int(labels[k]), "image_index": i})
                + "\n"
                for k, i in enumerate(indices)
            )
        )
        body = {
            "model": {"uri": f"path:{model}"},
            "dataset": {"uri": f"path:{dataset}"},
            "checks": [
                {
                    "kind": "lid",
                    "params": {
                        "training_images": f"path:{training}",
                        "t0": 50,
                        "flipd_guidance": 1.0,
                        "lpca_neighbors": 10,
                    },
                }
            ],
        }
        response = stack.client.post("/v1/audits", headers=stack.headers, json=body)
        assert response.status_code == 202, response.text
        audit = wait_final(stack.client, stack.headers, response.json()["id"], timeout=300)
        assert audit["status"] == "succeeded", (audit, worker.tail())
        found[name] = audit["summary"]["lid"]
    a, b = found["memorizer"], found["generalist"]
    print(
        f"\nFLIPD at t0=50 (D = 64): memorizer {a['mean_flipd']:.2f}, "
        f"generalist {b['mean_flipd']:.2f}"
    )
    assert a["mean_flipd"] < 0.5 * b["mean_flipd"]
    curve = a["by_group"]["unlabelled"]["curve"]
    assert list(curve) == ["10", "50", "100", "200"]
    assert sum(a["readings"].values()) == N_CLASSES
    report = stack.client.get(f"/v1/audits/{audit['id']}/report.html", headers=stack.headers)
    assert "lid-histogram" in report.text and "lid-curve" in report.text
