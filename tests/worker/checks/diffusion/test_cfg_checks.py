"""`cfg_basin` and `cfg_mitigation` through the service on two class-conditional DDPMs trained
here on 8×8 digits (tests/worker/checks/diffusion/builders.py): one that memorized one image
per class, and one
trained on all of them plus five canary conditions that each name a duplicated image."""

from __future__ import annotations

import json

import pytest

from tests.flows import all_samples, wait_final
from tests.worker.checks.diffusion.builders import CANARY_CLASSES, N_CLASSES

pytestmark = pytest.mark.slow
diffusers = pytest.importorskip("diffusers")
GUIDANCE = 2.0  # a tiny pixel-space model: 7.5 pushes its samples out of the image range
# The canary conditions share their digit with 30 other images: from 1.5 on, guidance in pixel
# space degrades this model's samples before it can amplify copying.
CANARY_GUIDANCE = 1.25
CANARY_TAU = 300  # this model's digits take shape later than SD's latents (τ = 500 there)
SIMILARITY_GAP = 0.05
MITIGATION_GAP = 0.02


@pytest.fixture(scope="module")
def models(digit_ddpms):  # type: ignore[no-untyped-def]
    return digit_ddpms


def _audit(
    stack,
    model,
    training,
    checks_params: dict,
    kind: str,
    conditions: dict[int, bool] | None = None,
    embedding: str | None = "pixels",
) -> dict:
    """One check over the given class conditions (label -> memorized flag; default: the ten
    digits, memorized), measured in pixels unless `embedding` is None (the check's default,
    the copy encoder, which the default-encoder and delayed-guidance tests use) or another: the
    basin and canary assertions were sized on pixel figures."""
    conditions = conditions or dict.fromkeys(range(N_CLASSES), True)
    dataset = model.parent.parent / "data" / f"prompts-{kind}-{model.name}.jsonl"
    dataset.write_text(
        "".join(
            json.dumps({"id": f"class-{k}", "class_label": k, "memorized": flag}) + "\n"
            for k, flag in conditions.items()
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
                    **({} if embedding is None else {"embedding": embedding}),
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
    # The canary model on its ten digit classes: what a model trained on many images does.
    digits = dict.fromkeys(range(N_CLASSES), False)
    general = _audit(stack, models.canary_model, models.many, {}, "cfg_basin", digits)
    assert memorized["status"] == general["status"] == "succeeded", (memorized, worker.tail())
    a, b = memorized["summary"]["cfg_basin"], general["summary"]["cfg_basin"]
    print(
        f"\nmemorizer: Δ {a['mean_detection_score']:.3f}, similarity {a['mean_similarity']:.3f}, "
        f"copies {a['copy_rate']:.2f}; generalist: Δ {b['mean_detection_score']:.3f}, "
        f"similarity {b['mean_similarity']:.3f}, copies {b['copy_rate']:.2f} (pixels)"
    )
    assert (a["embedding"], a["threshold"]) == ("pixels", 0.9)
    assert a["mean_detection_score"] > 1.3 * b["mean_detection_score"]
    assert a["mean_similarity"] > b["mean_similarity"] + SIMILARITY_GAP
    # Cosine 0.9 of centred 8×8 pixels is loose: half the generalist's digits (best of two
    # seeds) reach it too, against every class of the memorizer.
    assert a["copy_rate"] >= 0.8 and a["copy_rate"] >= b["copy_rate"] + 0.4
    rows = all_samples(stack.client, stack.headers, memorized["id"], "cfg_basin")
    copied = [r["values"] for r in rows if r["values"]["copies"]]
    # A copy is of the training image of the class asked for.
    assert all(v["nearest_label"] == v["condition"] for v in copied)
    assert len(a["delta_curves"]["memorized"]) == 50
    assert set(a["exemplars"]) == {e["id"] for e in a["most_similar"]}
    report = stack.client.get(f"/v1/audits/{memorized['id']}/report.html", headers=stack.headers)
    assert report.status_code == 200
    assert "basin-delta" in report.text and "basin-pairs" in report.text
    assert "cosine of centred pixels" in report.text

    # A configured embedding (a built-in MLP's hidden layer): a copy is a copy in any
    # embedding, so the memorizer still copies every class.
    import torch

    from worker.loaders.builtin_nets import build, save_builtin

    architecture = {"name": "mlp", "input_dim": 64, "hidden": [32], "n_classes": 10}
    torch.manual_seed(0)
    encoder = save_builtin(models.memorizer.parent / "digit-mlp", architecture, build(architecture))
    own = {"embedding": f"path:{encoder}", "similarity_threshold": 0.9}
    embedded = _audit(stack, models.memorizer, models.few, own, "cfg_basin")
    assert embedded["status"] == "succeeded", (embedded, worker.tail())
    assert embedded["summary"]["cfg_basin"]["copy_rate"] == 1.0


def test_the_copy_encoder_is_the_default(make_stack, models) -> None:
    """The default embedding, the bundled encoder, at its calibrated threshold: it was trained
    to see through noise drawn on an 8×8 grid, so the memorizer's reproductions, which differ
    from their training image by the sampler's leftover noise, count as copies, and the
    generalist's new digits do not, though in pixels half of them reach 0.9."""
    from worker.engine.diffusion import copy_encoder

    stack = make_stack(model_roots=str(models.memorizer.parent), data_roots=str(models.few.parent))
    worker = stack.start_worker()
    found = {}
    for name, model, training in [
        ("memorizer", models.memorizer, models.few),
        ("generalist", models.canary_model, models.many),
    ]:
        digits = dict.fromkeys(range(10), True)
        audit = _audit(stack, model, training, {}, "cfg_basin", digits, embedding=None)
        assert audit["status"] == "succeeded", (audit, worker.tail())
        found[name] = audit["summary"]["cfg_basin"]
        assert found[name]["embedding"] == "copy_encoder"
        assert found[name]["threshold"] == copy_encoder.threshold()
    print(
        "\ncopy encoder: "
        + ", ".join(
            f"{n} similarity {v['mean_similarity']:.3f} copies {v['copy_rate']:.2f}"
            for n, v in found.items()
        )
    )
    memorizer, generalist = found["memorizer"], found["generalist"]
    assert memorizer["mean_similarity"] > generalist["mean_similarity"] + 0.1
    assert memorizer["copy_rate"] >= 0.4 and generalist["copy_rate"] <= 0.1
    report = stack.client.get(f"/v1/audits/{audit['id']}/report.html", headers=stack.headers)
    assert "bundled copy-detection encoder" in report.text


def test_canary_conditions_pull_harder_than_the_digits_in_one_model(make_stack, models) -> None:
    """Jain et al.'s setting inside one model: memorized conditions against ordinary ones."""
    stack = make_stack(model_roots=str(models.memorizer.parent), data_roots=str(models.few.parent))
    worker = stack.start_worker()
    conditions = {**dict.fromkeys(range(N_CLASSES), False), **dict.fromkeys(CANARY_CLASSES, True)}
    params = {"guidance_scale": CANARY_GUIDANCE, "seeds": list(range(1, 9))}
    audit = _audit(stack, models.canary_model, models.many, params, "cfg_basin", conditions)
    assert audit["status"] == "succeeded", (audit, worker.tail())
    flags = audit["summary"]["cfg_basin"]["by_flag"]
    memorized, ordinary = flags["memorized"], flags["not_memorized"]
    print(
        f"\ncanary conditions: Δ {memorized['detection_score']:.3f}, similarity "
        f"{memorized['similarity']:.3f}; digits: Δ {ordinary['detection_score']:.3f}, "
        f"similarity {ordinary['similarity']:.3f}"
    )
    assert memorized["detection_score"] > ordinary["detection_score"]
    assert memorized["similarity"] > ordinary["similarity"]


def test_delayed_guidance_copies_the_canaries_less(make_stack, models) -> None:
    """cfg_mitigation on the canary conditions, in the default embedding (the copy encoder):
    the static transition (no guidance while t > τ) lowers the similarity to the nearest
    training image and how often a generation is a copy, at some cost in alignment."""
    stack = make_stack(model_roots=str(models.memorizer.parent), data_roots=str(models.few.parent))
    worker = stack.start_worker()
    params = {
        "guidance_scale": CANARY_GUIDANCE,
        "tau": CANARY_TAU,
        "seeds": list(range(1, 17)),
    }
    canaries = dict.fromkeys(CANARY_CLASSES, True)
    audit = _audit(
        stack, models.canary_model, models.many, params, "cfg_mitigation", canaries, None
    )
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
    rows = all_samples(stack.client, stack.headers, audit["id"], "cfg_mitigation")
    assert audit["summary"]["cfg_mitigation"]["embedding"] == "copy_encoder"
    threshold = audit["summary"]["cfg_mitigation"]["threshold"]
    per_generation = {m: [] for m in methods}
    for row in rows:
        record = stack.client.get(
            f"/v1/audits/{audit['id']}/samples/{row['sample_index']}", headers=stack.headers
        ).json()
        for method, runs in record["checks"][0]["detail"]["runs"].items():
            per_generation[method] += [r["similarity"] for r in runs]
    mean = {m: sum(v) / len(v) for m, v in per_generation.items()}
    copies = {m: sum(s >= threshold for s in v) / len(v) for m, v in per_generation.items()}
    print(
        "over all 80 generations: "
        + ", ".join(f"{m} similarity {mean[m]:.3f} copies {copies[m]:.2f}" for m in mean)
    )
    assert all(len(v) == 16 * len(CANARY_CLASSES) for v in per_generation.values())
    assert mean["stp"] < mean["cfg"] - MITIGATION_GAP
    assert copies["stp"] < copies["cfg"] - 0.1
    assert methods["stp"]["mean_similarity"] < methods["cfg"]["mean_similarity"]
    assert methods["cfg"]["alignment_cost"] == 0

    runs = record["checks"][0]["detail"]["runs"]
    stp = runs["stp"][0]
    # Static transition at τ: no guidance while t > τ (DDIM's 50 steps: 980, 960, …).
    scheduler = diffusers.DDIMScheduler(num_train_timesteps=1000)
    scheduler.set_timesteps(50)
    before = sum(int(t) > CANARY_TAU for t in scheduler.timesteps)
    assert before == 34
    assert stp["scales"] == [0.0] * before + [CANARY_GUIDANCE] * (50 - before)
    assert stp["transition"] == before
    dtp = runs["dtp"][0]
    fire = dtp["transition"]
    assert dtp["scales"] == [1.0] * fire + [CANARY_GUIDANCE] * (50 - fire)
    og = runs["og_dtp"][0]
    assert og["scales"][: og["transition"]] == [-CANARY_GUIDANCE] * og["transition"]
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
                "embedding": f"path:{models.memorizer}",
                "similarity_threshold": 0.5,
            },
        }
    ]
    not_an_encoder = stack.client.post("/v1/audits", headers=stack.headers, json=body)
    assert not_an_encoder.status_code == 422
    assert "give a classifier or encoder" in not_an_encoder.json()["error"]["message"]
    body["checks"][0]["params"] = {
        "training_images": f"path:{models.few}",
        "embedding": f"path:{models.memorizer}",
    }
    no_threshold = stack.client.post("/v1/audits", headers=stack.headers, json=body)
    assert no_threshold.status_code == 422
    assert "similarity_threshold is required" in no_threshold.text
    body["checks"][0]["params"] = {
        "training_images": f"path:{models.few}",
        "clip_model": f"path:{models.memorizer}",
    }
    not_clip = stack.client.post("/v1/audits", headers=stack.headers, json=body)
    assert not_clip.status_code == 422 and "give a CLIP model" in not_clip.text


def test_the_memorizer_gives_its_training_images_a_lower_local_dimension(
    make_stack, models
) -> None:
    """FLIPD of both models on the ten images the memorizer saw (the canary model saw them
    too, among all the others)."""
    import numpy as np

    stack = make_stack(model_roots=str(models.memorizer.parent), data_roots=str(models.few.parent))
    worker = stack.start_worker()
    labels = np.load(models.few)["y"]
    many_labels = np.load(models.many)["y"]
    first = [int(np.flatnonzero(many_labels == k)[0]) for k in range(N_CLASSES)]
    found = {}
    for name, model, training, indices in [
        ("memorizer", models.memorizer, models.few, list(range(N_CLASSES))),
        ("generalist", models.canary_model, models.many, first),
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
