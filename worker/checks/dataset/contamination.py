"""The contamination kind: how much of an evaluation set (the audited dataset) occurs in a
training corpus (the `corpus` param): each evaluation record's word n-gram overlap (GPT-3's
13-grams; `worker/engine/corpus/contamination.py`) and the longest span of it found in the
corpus's exact byte index (`duplication.exact_index`, the same artefact a dataset audit of that
corpus builds). Both artefacts are built once per corpus per host."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from core.inspection.datasets import Record
from worker.checks.dataset.duplication import corpus_texts, exact_index, record_text
from worker.checks.dataset.kinds import ContaminationParams
from worker.engine.corpus.contamination import (
    NgramSet,
    build_ngram_set,
    contamination_rows,
    contamination_summary,
)
from worker.engine.corpus.exact import ExactIndex

NGRAM_ARTEFACT = "ngram-set"


@dataclass(frozen=True)
class ContaminationInputs:
    ngrams: NgramSet
    index: ExactIndex | None  # None: the longest common span was not asked for
    corpus_sha256: str


def prepare_contamination(corpus: Any, params: ContaminationParams) -> ContaminationInputs:
    """The training corpus's n-gram set (and exact index), built on first use on this host."""
    training = corpus.named(params.corpus, params.corpus_sha256)

    def write(records: Iterator[Record], directory: Path) -> None:
        build_ngram_set(corpus_texts(records), directory / "ngrams", n=params.n)

    directory = training.artefact(NGRAM_ARTEFACT, f"v1-n{params.n}", training.build_with(write))
    index = exact_index(training) if params.longest_span else None
    return ContaminationInputs(NgramSet.open(directory / "ngrams"), index, training.sha256)


def contamination_values(
    inputs: ContaminationInputs, records: Sequence[Record], _params: ContaminationParams
) -> list[dict[str, Any]]:
    """Per evaluation record: n-grams, those found in the corpus, the fraction, whether it is
    contaminated, and the longest span found (bytes, occurrences)."""
    texts = [record_text(record) for record in records]
    present = [text for text in texts if text is not None]
    longest = inputs.index.longest_match if inputs.index is not None else None
    found = iter(contamination_rows(present, inputs.ngrams, longest))
    values = []
    for text in texts:
        if text is None:
            values.append({"contaminated": None, "skipped": "no text"})
            continue
        row = next(found)
        row.pop("index")
        values.append(row)
    return values


def contamination_facts(inputs: ContaminationInputs, params: ContaminationParams) -> dict:
    return {
        "corpus": params.corpus,
        "corpus_sha256": inputs.corpus_sha256,
        "n": params.n,
        "corpus_ngrams": len(inputs.ngrams),
    }


FRACTION_BINS = 10  # tenths of a record's n-grams, after a bin of its own for none found


def overlap_histogram(rows: Sequence[dict[str, Any]]) -> dict[str, list[Any]]:
    """Evaluation records by the share of their n-grams found in the corpus: `0` alone (clean
    by GPT-3's test), then (0–10%] up to (90–100%]. Binned from the counts, not the rounded
    fraction, so a record at exactly 30% lands in 20–30%."""
    labels = ["0"] + [
        f"{10 * b}–{10 * (b + 1)}%" if b else f">0–{10 * (b + 1)}%" for b in range(FRACTION_BINS)
    ]
    records = [0] * len(labels)
    for row in rows:
        found, total = int(row["n_found"]), int(row["n_ngrams"])
        records[-(-found * FRACTION_BINS // total)] += 1  # ceil: 0 only when nothing was found
    return {"bins": labels, "records": records}


def summarize_contamination(
    values: Sequence[dict[str, Any] | None], _params: ContaminationParams
) -> dict[str, Any]:
    rows = [v for v in values if v is not None and "skipped" not in v]
    judged = [row for row in rows if row.get("n_ngrams")]
    return {
        **contamination_summary(rows),
        "n_skipped": len(values) - len(rows),
        "overlap_histogram": overlap_histogram(judged) if judged else None,
    }
