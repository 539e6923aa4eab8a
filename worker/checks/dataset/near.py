"""The near_duplicates kind: MinHash-LSH clusters of records whose word-shingle Jaccard reaches
the threshold (`worker/engine/corpus/near_duplicates.py`), built once per corpus and looked up
per record in shards. The largest clusters' examples are masked and stored with the artefact
at build time, so no shard reads the corpus again to show them."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from core.inspection.datasets import Record
from worker.checks.dataset.display import Display
from worker.checks.dataset.duplication import corpus_texts, record_text
from worker.checks.dataset.kinds import NearDuplicateParams
from worker.engine.corpus.near_duplicates import NearDuplicates, build_near_duplicates

NEAR_ARTEFACT = "near-duplicates"
EXAMPLES_PER_CLUSTER = 3


@dataclass(frozen=True)
class NearInputs:
    index: NearDuplicates
    clusters: list[dict[str, Any]]  # the largest clusters, examples masked


def _examples(index: NearDuplicates, records: Iterator[Record], display: Display, top: int) -> list:
    """The largest clusters with a few masked member texts each (one pass over the corpus)."""
    clusters = index.clusters(top=top, examples=EXAMPLES_PER_CLUSTER)
    wanted = {member for cluster in clusters for member in cluster.members}
    texts = {r.index: record_text(r) or "" for r in records if r.index in wanted}
    return [
        {
            "cluster": cluster.cluster_id,
            "size": cluster.size,
            "members": cluster.members,
            "examples": [display.short(texts.get(member, "")) for member in cluster.members],
        }
        for cluster in clusters
    ]


def prepare_near(corpus: Any, params: NearDuplicateParams) -> NearInputs:
    """The corpus's clusters, built from every record on first use on this host."""
    display = corpus.display()
    key = (
        f"v1-j{params.threshold:g}-p{params.num_perm}-w{params.shingle}-s{params.seed}"
        f"-t{params.top_clusters}"
    )

    def write(records: Iterator[Record], directory: Path) -> None:
        index = NearDuplicates.open(
            build_near_duplicates(
                corpus_texts(records),
                directory / "index",
                threshold=params.threshold,
                num_perm=params.num_perm,
                shingle=params.shingle,
                seed=params.seed,
            )
        )
        clusters = _examples(index, corpus.records(), display, params.top_clusters)
        (directory / "clusters.json").write_text(json.dumps(clusters))

    directory = corpus.artefact(NEAR_ARTEFACT, key, corpus.build_with(write))
    clusters = json.loads((directory / "clusters.json").read_text())
    return NearInputs(NearDuplicates.open(directory / "index"), clusters)


def near_values(
    inputs: NearInputs, records: Sequence[Record], _params: NearDuplicateParams
) -> list[dict[str, Any]]:
    """Per record: its cluster, the cluster's size, and its closest partner's Jaccard."""
    values = []
    for record in records:
        if record_text(record) is None:
            values.append({"cluster_size": None, "near_duplicate": None, "skipped": "no text"})
            continue
        match = inputs.index.record(record.index)
        values.append(
            {
                "cluster": match.cluster_id,
                "cluster_size": match.cluster_size,
                "near_duplicate": match.cluster_size > 1,
                "partner": match.partner,
                "jaccard": match.jaccard,
            }
        )
    return values


def near_facts(inputs: NearInputs, _params: NearDuplicateParams) -> dict[str, Any]:
    """Corpus-level: the LSH settings, cluster counts and sizes, the largest clusters."""
    return {**inputs.index.stats(), "largest_clusters": inputs.clusters}


def summarize_near(
    values: Sequence[dict[str, Any] | None], params: NearDuplicateParams
) -> dict[str, Any]:
    assessed = [v for v in values if v is not None and v.get("cluster_size") is not None]
    n = len(assessed)
    clustered = [v for v in assessed if v["near_duplicate"]]
    jaccards = [v["jaccard"] for v in clustered if v.get("jaccard") is not None]
    return {
        "n_records": n,
        "n_skipped": len(values) - n,
        "threshold": params.threshold,
        "n_near_duplicate_records": len(clustered),
        "near_duplicate_share": len(clustered) / n if n else None,
        "n_clusters": len({v["cluster"] for v in clustered}),
        "max_cluster_size": max((v["cluster_size"] for v in assessed), default=None),
        # A deduplication keeping one record per cluster would drop this many.
        "n_excess_records": len(clustered) - len({v["cluster"] for v in clustered}),
        "jaccard_deciles": _deciles(jaccards),
    }


def _deciles(values: Sequence[float]) -> list[float] | None:
    """Minimum, deciles and maximum of the clustered records' best Jaccard."""
    return np.quantile(values, np.linspace(0, 1, 11)).tolist() if values else None
