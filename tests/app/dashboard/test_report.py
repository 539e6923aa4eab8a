"""A report is drawn from the registry's report parts; a kind whose package is gone from
this host is left out of the page, not a reason for the page to fail."""

from __future__ import annotations

from app.dashboard.report import build_report
from core.models import Audit


def test_a_kind_no_longer_installed_is_left_out_of_the_report() -> None:
    audit = Audit(
        id="a" * 32,
        model_uri="path:/models/m",
        model_family="m",
        dataset_uri="dataset:x",
        dataset_sha256="0" * 64,
        n_samples=2,
        checks=[{"kind": "uninstalled_kind", "params": {}}, {"kind": "loss", "params": {}}],
        summary={
            "uninstalled_kind": {"n": 2},
            "loss": {"histogram": {"edges": [0, 1], "counts": {"all": [2]}}},
        },
        provenance={},
        labels={},
    )
    report = build_report(audit)
    assert [section.kind for section in report.sections] == ["loss"]
    assert [table.check for table in report.tables] == ["loss"]
