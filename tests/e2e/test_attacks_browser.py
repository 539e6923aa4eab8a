"""Issue #32's report parts in a real headless Chromium, over audits a real worker ran: the new
membership scores in the records table and the ROC chart (with the held-out records named), the
fine-tune vs base section, and a coverage strip per document. The approximate-memorization
histograms and token view are exercised by tests/e2e/test_approximate_browser.py.

Every model is trained here in seconds: the demo canary model is the fine-tune, a base of the
same tokenizer learns only the canary template, and a tiny masked LM makes the neighbours."""

from __future__ import annotations

import dataclasses
import json
import random
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.browsers import Watched
from tests.e2e.conftest import Served, serve
from tests.flows import upload, wait_final
from tests.worker.masked_lm import build_masked_lm
from worker.demo import DemoArtifacts, canary_text, tiny_gpt2, train_step

pytestmark = pytest.mark.slow
NEW_SCORES = ("recall", "con_recall", "dc_pdd", "pac", "neighbourhood")
WINDOW = {"prefix_tokens": 8, "suffix_tokens": 16}


def _train_base(target: Path, base: Path) -> None:
    """A base of the target's tokenizer that learnt the canary template, never a secret."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(target)
    model, optimizer = tiny_gpt2(tokenizer, seed=3)
    rng = random.Random(1234)
    generic = [canary_text(rng) for _ in range(64)]
    for _ in range(60):
        train_step(model, optimizer, tokenizer, rng.sample(generic, 16))
    model.eval()
    model.save_pretrained(base)
    tokenizer.save_pretrained(base)


@dataclasses.dataclass(frozen=True)
class Models:
    target: Path
    base: Path
    neighbour: Path


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory, tiny_lm: DemoArtifacts) -> Models:
    root = tmp_path_factory.mktemp("attack_models") / "models"
    target = root / "canary-gpt2"
    shutil.copytree(tiny_lm.model_dir, target)
    _train_base(target, root / "base-gpt2")
    texts = [json.loads(line)["text"] for line in tiny_lm.dataset_path.read_text().splitlines()]
    build_masked_lm(root / "neighbour-bert", texts, steps=30)
    return Models(target, root / "base-gpt2", root / "neighbour-bert")


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory, tiny_lm: DemoArtifacts, models: Models
) -> Iterator[Served]:
    """The service with the target, its base and the masked LM under its model root."""
    lm = dataclasses.replace(tiny_lm, model_dir=models.target)
    with serve(tmp_path_factory.mktemp("served_attacks"), lm) as instance:
        yield instance


def _submit(served: Served, body: dict) -> str:
    response = served.client.post("/v1/audits", headers=served.headers, json=body)
    assert response.status_code == 202, response.text
    return response.json()["id"]


@pytest.fixture(scope="module")
def audits(served: Served, tiny_lm: DemoArtifacts, models: Models) -> dict[str, dict]:
    """The membership scores and fine-tune vs base on the canaries; coverage over two works."""
    canaries = upload(served.client, served.headers, tiny_lm.dataset_path)["uri"]
    rows = [json.loads(line) for line in tiny_lm.dataset_path.read_text().splitlines()]
    members = [r["text"] for r in rows if r["member"]][:4]
    others = [r["text"] for r in rows if not r["member"]][:4]
    works = served.data_root / "works.jsonl"
    works.write_text(
        json.dumps({"id": "memorized-work", "text": " ".join(members + others)})
        + "\n"
        + json.dumps({"id": "unseen-work", "text": " ".join(others)})
        + "\n"
    )
    works_uri = upload(served.client, served.headers, works)["uri"]
    membership = {
        "scores": ["loss", "zlib", "mink", *NEW_SCORES],
        "bootstrap": 50,
        "pac_augmentations": 2,
        "neighbour_model": f"path:{models.neighbour}",
        "neighbours": 4,
    }
    attacks = _submit(
        served,
        {
            "model": {"uri": f"path:{models.target}"},
            "reference_model": {"uri": f"path:{models.base}"},
            "dataset": {"uri": canaries},
            "checks": [
                {"kind": "membership", "params": membership},
                {"kind": "finetune", "params": {**WINDOW, "stride": 4, "bootstrap": 50}},
            ],
        },
    )
    coverage = _submit(
        served,
        {
            "model": {"uri": f"path:{models.target}"},
            "dataset": {"uri": works_uri},
            "checks": [
                {
                    "kind": "coverage",
                    "params": {**WINDOW, "stride": 4, "threshold": 0.5, "top_passages": 3},
                }
            ],
        },
    )
    found = {}
    for name, audit_id in (("attacks", attacks), ("coverage", coverage)):
        audit = wait_final(served.client, served.headers, audit_id, 300)
        assert audit["status"] == "succeeded", audit
        found[name] = audit
    return found


def _open(served: Served, browser, audit_id: str) -> Watched:
    watched = Watched(browser, 1280)
    page = watched.page
    page.goto(f"{served.base_url}/login")
    page.fill("input[name=key]", served.key)
    page.click("button[type=submit]")
    page.wait_for_url("**/audits")
    page.goto(f"{served.base_url}/audits/{audit_id}")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.chart')].every(e => e.dataset.rendered)",
        timeout=30000,
    )
    return watched


def test_new_membership_scores_and_the_finetune_section(
    served: Served, audits: dict[str, dict], browser
) -> None:
    audit = audits["attacks"]
    summary = audit["summary"]["membership"]
    assert set(NEW_SCORES) <= set(summary["scores"]), sorted(summary["scores"])
    watched = _open(served, browser, audit["id"])
    page = watched.page

    # The ROC draws a curve per new score, named with its AUROC.
    names = page.eval_on_selector("#membership-roc", "e => e.data.map(t => t.name)")
    for key in NEW_SCORES:
        auc = summary["scores"][key]["auroc"]["value"]
        assert f"{key} · AUC {auc:.3f}" in names, names
        assert page.locator(f"#membership-dist-{key}").count() == 1
    # The section names the held-out records the prefix scores learnt from, and loss's AUROC.
    section = page.inner_text("#section-membership")
    holdout = summary["holdout"]
    held = [*holdout["prefix"]["members"], *holdout["prefix"]["nonmembers"]]
    assert held and all(sample_id in section for sample_id in held)
    assert "loss's is" in section
    for key in NEW_SCORES:  # each score has its reading
        assert page.locator("[data-table='membership'] th", has_text=key).count() >= 1

    # The records table carries a column per new score, and a held-out record has no score.
    page.wait_for_selector("tbody tr[data-sample]")
    page.click("[role=tab][data-check='membership']")
    page.wait_for_function(
        "() => document.querySelectorAll('[data-records] thead button[data-sort]').length > 3",
        timeout=10000,
    )
    headers = page.eval_on_selector_all(
        "[data-records] thead th", "els => els.map(e => e.textContent.trim())"
    )
    watched.shot("attacks-membership-finetune")
    # Past the four indexed sort slots a score is still shown, as an unsortable column.
    assert set(NEW_SCORES) <= set(headers), headers
    cells = page.eval_on_selector_all(
        "tbody tr[data-sample]",
        "(rows, keys) => rows.map(r => keys.map(k => r.querySelector(`td[data-key='${k}']`)"
        ".textContent))",
        list(NEW_SCORES),
    )
    scored = [row for row in cells if "—" not in row]
    assert scored, cells
    assert all(float(cell) == float(cell) for cell in scored[0])  # numbers, not "—"
    page.click("[data-records] thead button[data-sort='recall']")
    page.wait_for_selector(
        "[data-records] thead th[aria-sort='descending'] [data-sort='recall']", timeout=10000
    )
    page.wait_for_selector("tbody tr[data-sample]")

    # The fine-tune vs base section: the counts chart and the Δℓ histograms.
    finetune = audit["summary"]["finetune"]
    counts = finetune["extraction"]
    assert counts["members"]["target_not_base"] > 0
    assert counts["nonmembers"]["target_not_base"] == 0
    bars = page.eval_on_selector("#finetune-extraction", "e => e.data.map(t => [t.name, t.y])")
    assert dict(bars)["fine-tune, not base"] == [
        counts["members"]["target_not_base"],
        counts["nonmembers"]["target_not_base"],
    ]
    assert page.locator("#finetune-dist-mean_delta").count() == 1
    text = page.inner_text("#section-finetune")
    assert "Fine-tune vs base" in text
    assert f"{counts['all']['target_not_base']:,} of {counts['all']['n_windowed']:,}" in text
    first = finetune["target_not_base"][0]["id"]
    assert page.locator("[data-table='finetune'] tbody th", has_text=first).count() >= 1
    watched.shot("attacks-membership-finetune")
    assert watched.errors == []
    assert watched.hosts == {"127.0.0.1"}, watched.hosts
    watched.close()


def test_a_coverage_strip_per_document(served: Served, audits: dict[str, dict], browser) -> None:
    audit = audits["coverage"]
    summary = audit["summary"]["coverage"]
    watched = _open(served, browser, audit["id"])
    page = watched.page
    rows = page.eval_on_selector("#coverage-strips", "e => [...new Set(e.data.flatMap(t => t.y))]")
    assert sorted(rows) == ["memorized-work", "unseen-work"]
    spans = page.eval_on_selector(
        "#coverage-strips", "e => e.data[0].y.filter(y => y === 'memorized-work').length"
    )
    lead = summary["lead"]
    by_id = {strip["sample_id"]: strip for strip in summary["strips"]}
    assert spans == len(by_id["memorized-work"]["spans"][lead]) > 0
    # The bars are drawn: each extractable span is a rect inside the plot.
    assert page.locator("#coverage-strips .bars path").count() >= spans
    table = page.locator("[data-table='coverage']")
    assert table.count() == 1
    share = by_id["memorized-work"]["coverage_share"][lead]
    run = by_id["memorized-work"]["longest_run"][lead]
    first = table.locator("tbody tr").first
    assert first.locator("th").inner_text() == "memorized-work"
    cells = first.locator("td").all_inner_texts()
    assert cells[0] == f"{share:.1%}" and cells[1] == f"{run:,}"
    passage = by_id["memorized-work"]["top_passages"][lead][0]["text"]
    assert cells[-1].rstrip("…") in passage
    assert "windows over" in page.inner_text("#section-coverage")
    watched.shot("attacks-coverage")
    assert watched.errors == []
    watched.close()
