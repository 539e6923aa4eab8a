"""The dashboard in a real headless Chromium over audits a real worker produced.

Debian's `chromium` is driven by Playwright; no browser is ever downloaded. Screenshots of each
page land in tests/artifacts/ (git-ignored).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import filler_records, write_jsonl
from tests.e2e.browsers import ARTIFACTS, Watched
from tests.e2e.conftest import Served
from tests.flows import submit, upload, wait_final
from worker.demo import DemoArtifacts

pytestmark = pytest.mark.slow
CHECKS = [
    {"kind": "extraction", "params": {"prefix_tokens": 10, "suffix_tokens": 16}},
    {"kind": "membership", "params": {"bootstrap": 50}},
    {"kind": "loss", "params": {}},
]


@pytest.fixture(scope="module")
def audits(served: Served, tiny_lm: DemoArtifacts) -> list[dict]:
    """Two versions of the demo model audited by the served worker, oldest first."""
    dataset = upload(served.client, served.headers, tiny_lm.dataset_path)["uri"]
    finished = []
    for version in ("1", "2"):
        body = {
            "model": {"uri": f"path:{tiny_lm.model_dir}"},
            "dataset": {"uri": dataset},
            "checks": CHECKS,
            "labels": {"model_family": "canary-gpt2", "model_version": version},
        }
        response = served.client.post("/v1/audits", headers=served.headers, json=body)
        assert response.status_code == 202, response.text
        audit = wait_final(served.client, served.headers, response.json()["id"])
        assert audit["status"] == "succeeded", audit
        finished.append(audit)
    return finished


def _sign_in(watched: Watched, served: Served) -> None:
    page = watched.page
    page.goto(f"{served.base_url}/audits")
    assert "/login" in page.url  # without the cookie only the login page is served
    watched.shot("login")
    page.fill("input[name=key]", served.key)
    page.click("button[type=submit]")
    page.wait_for_url("**/audits")


def _wait_for_charts(page) -> list[dict]:
    """Every chart of the page drawn by plotly.js; returns each one's traces and points."""
    page.wait_for_function(
        "() => [...document.querySelectorAll('.chart')].every(e => e.dataset.rendered)",
        timeout=30000,
    )
    return page.eval_on_selector_all(
        ".chart",
        """els => els.map(e => ({
            id: e.id,
            svg: e.querySelectorAll('.main-svg').length,
            traces: e.data.length,
            points: e.data.reduce((n, t) => n + (t.x ? t.x.length : 0), 0),
        }))""",
    )


def _scores(page) -> list[float]:
    """The score column; a record without a score ("—") ranks below every other."""
    cells = page.eval_on_selector_all(
        "tbody tr[data-sample] td[data-key='score']", "cells => cells.map(c => c.textContent)"
    )
    return [float("-inf") if cell == "—" else float(cell) for cell in cells]


def test_the_dashboard_in_chromium(served: Served, audits: list[dict], browser) -> None:
    second = audits[1]
    watched = Watched(browser, 1280)
    page = watched.page
    _sign_in(watched, served)
    assert page.locator(f"tr[data-audit='{second['id']}']").count() == 1
    assert "Greedy extraction" in page.inner_text("table.audits")
    watched.shot("audits-list")

    page.click(f"a[href='/audits/{second['id']}']")
    charts = _wait_for_charts(page)
    ids = {chart["id"] for chart in charts}
    assert {"extraction-rate-topk40_T1", "membership-roc", "loss-hist"} <= ids, ids
    for chart in charts:
        assert chart["svg"] >= 1 and chart["traces"] >= 1 and chart["points"] >= 2, chart
    cards = page.inner_text(".cards")
    assert "Greedy extraction · members" in cards and "100.0%" in cards

    page.wait_for_selector("tbody tr[data-sample]")
    scores = _scores(page)
    assert scores == sorted(scores, reverse=True)  # most memorized first
    page.click("th button[data-sort='score']")  # same column again: ascending
    page.wait_for_function(
        "() => document.querySelector(\"th[aria-sort='ascending'] button[data-sort='score']\")"
    )
    page.wait_for_load_state("networkidle")
    ascending = _scores(page)
    assert ascending == sorted(ascending) and ascending[0] < scores[0]

    button = page.locator("tbody tr[data-sample] button.expand").first
    button.focus()
    page.keyboard.press("Enter")  # the table works from the keyboard
    page.wait_for_selector(".record-detail .tokens .tok")
    assert button.get_attribute("aria-expanded") == "true"
    tokens = page.locator(".record-detail .tokens .tok")
    assert tokens.count() == 16
    assert tokens.first.get_attribute("title").startswith("rank ")
    watched.shot("audit-report")

    page.select_option("select[name=member]", "true")
    page.wait_for_load_state("networkidle")
    page.wait_for_function(
        "() => [...document.querySelectorAll('tbody tr[data-sample] td:nth-child(4)')]"
        ".every(td => td.textContent === 'member')"
    )

    page.click("a[href^='/models?family=']")
    _wait_for_charts(page)
    assert page.locator("tr[data-audit]").count() == 2
    watched.shot("model")
    page.click("button[type=submit].primary")  # compare the two selected versions
    page.wait_for_url("**/compare?**")
    overlays = _wait_for_charts(page)
    assert {"compare-roc"} <= {chart["id"] for chart in overlays}
    assert page.locator("tr[data-delta]").count() >= 4
    watched.shot("compare")

    assert watched.errors == []
    assert watched.hosts == {"127.0.0.1"}, watched.hosts
    watched.close()


def test_narrow_screens_still_work(served: Served, audits: list[dict], browser) -> None:
    watched = Watched(browser, 390, 844)
    _sign_in(watched, served)
    page = watched.page
    page.goto(f"{served.base_url}/audits/{audits[0]['id']}")
    _wait_for_charts(page)
    page.wait_for_selector("tbody tr[data-sample]")
    overflow = page.evaluate("document.documentElement.scrollWidth - window.innerWidth")
    assert overflow <= 1, overflow  # wide tables scroll inside their box, not the page
    watched.shot("audit-report-390px")
    assert watched.errors == [] and watched.hosts == {"127.0.0.1"}
    watched.close()


def test_exported_report_opens_offline(
    served: Served, audits: list[dict], browser, tmp_path: Path
) -> None:
    response = served.client.get(
        f"/v1/audits/{audits[1]['id']}/report.html", headers=served.headers
    )
    assert response.status_code == 200
    report = tmp_path / "report.html"
    report.write_bytes(response.content)
    ARTIFACTS.mkdir(exist_ok=True)
    shutil.copy(report, ARTIFACTS / "report.html")

    watched = Watched(browser, 1280)
    watched.context.set_offline(True)
    watched.page.goto(report.as_uri())
    charts = _wait_for_charts(watched.page)
    assert len(charts) >= 5 and all(chart["points"] >= 2 for chart in charts)
    assert watched.page.locator(".tokens .tok.r1").count() > 0
    watched.shot("report-export")
    assert watched.errors == []
    assert all(url.startswith("file://") for url in watched.urls), watched.urls
    watched.close()


def test_running_audits_show_live_progress_then_their_end(
    served: Served, audits: list[dict], browser, tiny_lm: DemoArtifacts
) -> None:
    big = write_jsonl(served.data_root / "progress.jsonl", filler_records(1500, seed=5))
    running = submit(served.client, served.headers, tiny_lm.model_dir, f"path:{big}")
    watched = Watched(browser, 1280)
    _sign_in(watched, served)
    page = watched.page
    row = f"tr[data-audit='{running['id']}']"
    page.wait_for_selector(f"{row} progress")
    start = page.eval_on_selector(f"{row} progress", "bar => bar.value")
    # The bar moves without a reload: progress.js polls the API with the session cookie.
    page.wait_for_function(
        f'() => document.querySelector("{row} progress").value > {start} + 8', timeout=60000
    )
    assert page.eval_on_selector(f"{row} progress", "bar => bar.max") == 1500
    page.goto(f"{served.base_url}/audits/{running['id']}")
    assert "the page refreshes when it finishes" in page.inner_text("main")
    cancelled = served.client.post(f"/v1/audits/{running['id']}/cancel", headers=served.headers)
    assert cancelled.status_code == 200
    # The page notices the end on its own and reloads into the cancelled report.
    page.wait_for_selector(".banner-cancelled", timeout=30000)
    assert "This audit was cancelled" in page.inner_text(".banner-cancelled")
    watched.shot("audit-cancelled")
    assert watched.errors == [] and watched.hosts == {"127.0.0.1"}
    watched.close()


def _place(models_root: Path, sources: dict[str, Path]) -> dict[str, Path]:
    """Copies of trained models under the served model root, by name."""
    placed = {}
    for name, source in sources.items():
        placed[name] = models_root / name
        shutil.copytree(source, placed[name], dirs_exist_ok=True)
    return placed


def _run_to_success(served: Served, bodies: dict[str, dict]) -> dict[str, dict]:
    """Each audit submitted to the served instance and waited for; all must succeed."""
    finished = {}
    for name, body in bodies.items():
        response = served.client.post("/v1/audits", headers=served.headers, json=body)
        assert response.status_code == 202, response.text
        finished[name] = wait_final(served.client, served.headers, response.json()["id"], 300)
        assert finished[name]["status"] == "succeeded", finished[name]
    return finished


@pytest.fixture(scope="module")
def classifier_audits(served: Served, tiny_lm: DemoArtifacts, tmp_path_factory) -> dict:
    """A noisy-label digits MLP (proxies, diversity, capacity) and an unlearning audit, run by
    the served worker; models go under its model root, datasets under its data root."""
    from tests.worker.checks.classifier.builders import noisy_digits, unlearning_models

    root = tmp_path_factory.mktemp("classifiers")
    digits = noisy_digits(root / "digits")
    forgetting = unlearning_models(root / "unlearning")
    placed = _place(
        tiny_lm.model_dir.parent,
        {
            "browser-digits": digits.model_dir,
            "browser-unlearned": forgetting.unlearned,
            "browser-original": forgetting.original,
            "browser-retrained": forgetting.retrained,
        },
    )
    shutil.copy(digits.dataset, served.data_root / "digits.npz")
    shutil.copy(forgetting.dataset, served.data_root / "unlearning.npz")
    bodies = {
        "digits": {
            "model": {"uri": f"path:{placed['browser-digits']}"},
            "dataset": {"uri": f"path:{served.data_root / 'digits.npz'}"},
            "checks": [
                {"kind": "proxies", "params": {"image_shape": [8, 8]}},
                {"kind": "diversity", "params": {}},
                {"kind": "capacity", "params": {}},
            ],
        },
        "unlearning": {
            "model": {"uri": f"path:{placed['browser-unlearned']}"},
            "dataset": {"uri": f"path:{served.data_root / 'unlearning.npz'}"},
            "checks": [
                {
                    "kind": "unlearning",
                    "params": {
                        "original_model": f"path:{placed['browser-original']}",
                        "retrained_model": f"path:{placed['browser-retrained']}",
                        "rum_n_per_level": 40,
                    },
                }
            ],
        },
    }
    return _run_to_success(served, bodies)


def test_classifier_reports_in_chromium(served: Served, classifier_audits: dict, browser) -> None:
    watched = Watched(browser, 1280)
    page = watched.page
    _sign_in(watched, served)
    page.goto(f"{served.base_url}/audits/{classifier_audits['digits']['id']}")
    charts = {chart["id"]: chart for chart in _wait_for_charts(page)}
    expected = {
        "diversity-entropy",
        "diversity-mi",
        "proxies-exemplars",
        "proxies-hist-loss",
        "proxies-hist-confidence",
        "capacity-nearest",
    }
    assert expected <= set(charts), sorted(charts)
    for chart in charts.values():
        assert chart["svg"] >= 1 and chart["traces"] >= 1, chart
    assert charts["proxies-exemplars"]["traces"] == 20  # the 20 most memorized, as images
    heatmaps = page.eval_on_selector(
        "#proxies-exemplars",
        "e => e.data.filter(t => t.type === 'heatmap' && t.z.length === 8).length",
    )
    assert heatmaps == 20
    text = page.inner_text("#section-diversity")
    assert "H1" in text and "H2" in text and "never merged" in text
    rows = page.locator("[data-table='proxies'] table").first.locator("tbody tr")
    assert rows.count() == 20
    page.wait_for_selector("tbody tr[data-sample]")
    watched.shot("classifier-report")

    page.goto(f"{served.base_url}/audits/{classifier_audits['unlearning']['id']}")
    charts = {chart["id"]: chart for chart in _wait_for_charts(page)}
    assert {"unlearning-accuracy", "unlearning-levels"} <= set(charts)
    assert charts["unlearning-accuracy"]["traces"] == 3  # original, unlearned, retrained
    scorecard = page.inner_text("[data-table='unlearning']")
    assert "Tug-of-War" in scorecard and "SVC attack" in scorecard
    watched.shot("unlearning-scorecard")
    assert watched.errors == []
    assert watched.hosts == {"127.0.0.1"}, watched.hosts
    watched.close()


@pytest.fixture(scope="module")
def reasoning_audits(served: Served, tiny_lm: DemoArtifacts, tmp_path_factory) -> dict:
    """A puzzle memorizer's kk_memorization audit, a two-version retention audit, and WILT on a
    local chat model."""
    from tests.worker.checks.reasoning.builders import (
        factoid_versions,
        guessing_chat_model,
        puzzle_memorizer,
    )

    root = tmp_path_factory.mktemp("reasoning")
    puzzles = puzzle_memorizer(root / "kk")
    facts = factoid_versions(root / "facts")
    placed = _place(
        tiny_lm.model_dir.parent,
        {
            "browser-kk": puzzles.model_dir,
            "browser-facts-v1": facts.first,
            "browser-facts-v2": facts.second,
            "browser-wilt-chat": guessing_chat_model(root / "wilt"),
        },
    )
    shutil.copy(puzzles.dataset, served.data_root / "kk.jsonl")
    shutil.copy(facts.dataset, served.data_root / "factoids.jsonl")
    rules = ["2", "1", "15"]
    (served.data_root / "wilt.jsonl").write_text(
        "".join(json.dumps({"id": f"rule-{r}", "rule": r}) + "\n" for r in rules)
    )
    bodies = {
        "kk": {
            "model": {"uri": f"path:{placed['browser-kk']}"},
            "dataset": {"uri": f"path:{served.data_root / 'kk.jsonl'}"},
            "checks": [{"kind": "kk_memorization", "params": {"max_new_tokens": 40}}],
        },
        "retention": {
            "model": {"uri": f"path:{placed['browser-facts-v2']}"},
            "dataset": {"uri": f"path:{served.data_root / 'factoids.jsonl'}"},
            "checks": [
                {
                    "kind": "retention",
                    "params": {
                        "versions": [f"path:{placed['browser-facts-v1']}"],
                        "max_new_tokens": 8,
                    },
                }
            ],
        },
        "wilt": {
            "model": {"uri": f"path:{placed['browser-wilt-chat']}"},
            "dataset": {"uri": f"path:{served.data_root / 'wilt.jsonl'}"},
            "checks": [{"kind": "wilt", "params": {"max_new_tokens": 40}}],
        },
    }
    return _run_to_success(served, bodies)


def test_reasoning_reports_in_chromium(served: Served, reasoning_audits: dict, browser) -> None:
    watched = Watched(browser, 1280)
    page = watched.page
    _sign_in(watched, served)
    page.goto(f"{served.base_url}/audits/{reasoning_audits['kk']['id']}")
    charts = {chart["id"]: chart for chart in _wait_for_charts(page)}
    assert {"kk-by-people", "kk-by-perturbation"} <= set(charts), sorted(charts)
    assert all(c["svg"] >= 1 and c["traces"] >= 1 for c in charts.values())
    assert "LiMem" in page.inner_text("[data-table='kk_memorization']")
    page.wait_for_selector("tbody tr[data-sample]")
    page.locator("tbody tr[data-sample] button.expand").first.click()
    page.wait_for_selector(".record-detail table.answers tr[data-form]")
    forms = page.locator(".record-detail table.answers tr[data-form]")
    names = [forms.nth(i).get_attribute("data-form") for i in range(forms.count())]
    assert names[0] == "original" and "perturbed_statement" in names
    assert "CONCLUSION" in forms.first.inner_text()  # the gold answer beside the model's
    watched.shot("kk-report")
    page.goto(f"{served.base_url}/audits/{reasoning_audits['retention']['id']}")
    charts = {chart["id"]: chart for chart in _wait_for_charts(page)}
    assert {"retention-heatmap", "retention-accuracy"} <= set(charts), sorted(charts)
    assert "Forgotten factoids" in page.inner_text("#section-retention")
    watched.shot("retention-report")
    page.goto(f"{served.base_url}/audits/{reasoning_audits['wilt']['id']}")
    charts = {chart["id"]: chart for chart in _wait_for_charts(page)}
    assert {"wilt-grid", "wilt-families", "wilt-tests", "wilt-agreement"} <= set(charts)
    assert all(c["svg"] >= 1 and c["traces"] >= 1 for c in charts.values())
    assert "1 of 3 rules solved" in page.inner_text("#section-wilt")
    page.wait_for_selector("tbody tr[data-sample]")
    page.locator("tbody tr[data-sample] button.expand").first.click()
    page.wait_for_selector(".record-detail .transcript .turn.assistant")
    assert "Final Guess" in page.inner_text(".record-detail .transcript .turn.assistant")
    assert page.locator(".record-detail .transcript .turn.system").count() == 1
    watched.shot("wilt-report")
    assert watched.errors == []
    assert watched.hosts == {"127.0.0.1"}, watched.hosts
    watched.close()


@pytest.fixture(scope="module")
def diffusion_audits(served: Served, tiny_lm: DemoArtifacts, digit_ddpms) -> dict:
    """cfg_basin, cfg_mitigation and lid on the digit DDPM that memorized one image a class."""
    placed = _place(tiny_lm.model_dir.parent, {"browser-ddpm": digit_ddpms.memorizer})
    training = shutil.copy(digit_ddpms.few, served.data_root / "digits-few.npz")
    prompts = served.data_root / "digit-prompts.jsonl"
    prompts.write_text(
        "".join(
            json.dumps({"id": f"digit-{k}", "class_label": k, "image_index": k, "memorized": True})
            + "\n"
            for k in range(10)
        )
    )
    common = {"training_images": f"path:{training}", "guidance_scale": 2.0}

    def body(kind: str, params: dict) -> dict:
        return {
            "model": {"uri": f"path:{placed['browser-ddpm']}"},
            "dataset": {"uri": f"path:{prompts}"},
            "checks": [{"kind": kind, "params": {**common, **params}}],
        }

    return _run_to_success(
        served,
        {
            "basin": body("cfg_basin", {}),
            "mitigation": body("cfg_mitigation", {}),
            "lid": body("lid", {"t0": 50, "flipd_guidance": 1.0, "lpca_neighbors": 10}),
        },
    )


def test_diffusion_reports_in_chromium(served: Served, diffusion_audits: dict, browser) -> None:
    watched = Watched(browser, 1280)
    page = watched.page
    _sign_in(watched, served)
    page.goto(f"{served.base_url}/audits/{diffusion_audits['basin']['id']}")
    charts = {chart["id"]: chart for chart in _wait_for_charts(page)}
    assert {"basin-delta", "basin-pairs"} <= set(charts), sorted(charts)
    # The Δ curve and the transition marker; generation and nearest image for each exemplar.
    assert charts["basin-delta"]["traces"] == 2 and charts["basin-delta"]["svg"] >= 1
    exemplars = len(diffusion_audits["basin"]["summary"]["cfg_basin"]["most_similar"])
    assert charts["basin-pairs"]["traces"] == 2 * exemplars
    watched.shot("cfg-basin-report")
    page.goto(f"{served.base_url}/audits/{diffusion_audits['mitigation']['id']}")
    charts = {chart["id"]: chart for chart in _wait_for_charts(page)}
    assert charts["mitigation-similarity"]["traces"] == 4
    assert "alignment cost" in page.inner_text("#section-cfg_mitigation")
    watched.shot("cfg-mitigation-report")
    page.goto(f"{served.base_url}/audits/{diffusion_audits['lid']['id']}")
    charts = {chart["id"]: chart for chart in _wait_for_charts(page)}
    assert {"lid-histogram", "lid-curve"} <= set(charts)
    assert charts["lid-curve"]["points"] == 4
    watched.shot("lid-report")
    assert watched.errors == []
    assert watched.hosts == {"127.0.0.1"}, watched.hosts
    watched.close()
