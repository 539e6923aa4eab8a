"""The window kinds' reading of a dataset before any model (`CheckKind.fit`): records shorter
than offset+prefix+suffix tokens at one token per byte have no window, whatever the model."""

from __future__ import annotations

from core.check_kinds import FitContext
from core.dataset_profile import profile_dataset
from tests.conftest import write_jsonl
from worker.checks.lm.approximate import APPROXIMATE, ApproximateParams
from worker.checks.lm.coverage import COVERAGE, CoverageParams
from worker.checks.lm.finetune import FINETUNE, FinetuneParams


def _profile(tmp_path, texts):
    path = write_jsonl(tmp_path / "d.jsonl", [{"text": t} for t in texts])
    return profile_dataset(path, len(texts), ["text"])


def test_approximate_and_coverage_refuse_records_all_shorter_than_the_window(tmp_path) -> None:
    short = FitContext(_profile(tmp_path, ["a few words", "tiny"]))
    for kind, params in (
        (APPROXIMATE, ApproximateParams(prefix_tokens=50, suffix_tokens=50)),
        (COVERAGE, CoverageParams(prefix_tokens=50, suffix_tokens=50)),
    ):
        found = kind.fit(params, short)
        assert len(found.refusals) == 1, kind.name
        assert "prefix_tokens+suffix_tokens = 100 tokens" in found.refusals[0]
        assert "at most 12" in found.refusals[0]  # "a few words": 11 bytes
        fits = kind.fit(params.model_copy(update={"prefix_tokens": 4, "suffix_tokens": 4}), short)
        assert not fits.refusals and len(fits.warnings) == 1  # "tiny" alone is skipped
    offset = APPROXIMATE.fit(ApproximateParams(prefix_tokens=4, suffix_tokens=4, offset=20), short)
    assert "offset+prefix_tokens+suffix_tokens = 28" in offset.refusals[0]


def test_finetune_warns_that_no_window_fits_but_keeps_its_scores(tmp_path) -> None:
    """Finetune's Δℓ scores read the whole text: only its window part would be empty."""
    short = FitContext(_profile(tmp_path, ["a few words", "tiny"]))
    found = FINETUNE.fit(FinetuneParams(prefix_tokens=32, suffix_tokens=32), short)
    assert not found.refusals
    assert any(w.startswith("no window's extraction is computed") for w in found.warnings)
    long = FitContext(_profile(tmp_path, ["word " * 100] * 2))
    assert not FINETUNE.fit(FinetuneParams(), long).warnings
