"""A model audit linked to a dataset audit of its training corpus (`corpus_audit`): each
record's text is counted in the corpus's exact byte index and scanned for PII types, so the
rates by duplicate count use measured counts (Carlini et al. 2023; Kandpal et al. 2022) rather
than a `duplicates` field someone filled in.

The index is the one the dataset audit's `duplication` check built on its host: the same
dataset sha256, params and tokenizer name give the same artefact directory, so on that host it
is opened as it is; on another it is rebuilt from the corpus dataset, read under the *model*
audit's grants (a team cannot learn counts of a corpus it may not read).

Which text is counted:
- extraction: the reported window (`best_window_offset`: the likeliest under the first scheme),
  its prefix and suffix ids decoded by the model's tokenizer; also each half alone;
- membership: the record's text, cut to what was scored when it was truncated.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from core.models import Audit, AuditStatus
from worker.access import PermanentError
from worker.checks.dataset.duplication import EXACT_ARTEFACT, exact_index
from worker.checks.dataset.kinds import DuplicationParams
from worker.checks.dataset.passes import Corpus
from worker.checks.lm.samples import LMSample
from worker.engine.corpus.exact import ExactIndex

# Lower edges of the corpus-count bins rates are grouped by: never seen, once, a few times, often,
# very often (the decades the Kandpal and Carlini curves are read in).
COUNT_BINS = (0, 1, 2, 10, 100)


def count_bin(count: int) -> str:
    """`0`, `1`, `2-9`, `10-99`, `100+`: the bin a corpus count falls in."""
    low = max(edge for edge in COUNT_BINS if edge <= count)
    following = [edge for edge in COUNT_BINS if edge > low]
    if not following:
        return f"{low}+"
    return str(low) if following[0] == low + 1 else f"{low}-{following[0] - 1}"


def bin_labels() -> list[str]:
    return [count_bin(low) for low in COUNT_BINS]


# A window repeated this often or more is compared with one seen once in the findings.
REPEATED = 10


class _RecordedTokenizer:
    """The dataset audit's tokenizer, by the name its provenance recorded, loaded only if the
    index has to be rebuilt here (opening a built one needs the name alone)."""

    def __init__(self, name: str, load: Callable[[], tuple[str, Any]]) -> None:
        self.name = name
        self._load = load

    @cached_property
    def _tokenizer(self) -> Any:
        name, tokenizer = self._load()
        if name != self.name:
            raise PermanentError(
                f"the corpus audit counted tokens with {self.name!r}, but {name!r} is what "
                "resolves now: re-run the dataset audit"
            )
        return tokenizer

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self._tokenizer(*args, **kwargs)


@dataclass
class CorpusLink:
    """The opened exact index of a corpus audit, and what the provenance says about it."""

    audit_id: str
    index: ExactIndex
    key: bytes  # the deployment's PII hash key (detection needs one; no hash is kept here)
    info: dict[str, Any] = field(default_factory=dict)

    def count(self, text: str) -> int:
        return self.index.count(text) if text else 0

    def pii_types(self, text: str) -> list[str]:
        """The kinds of PII in a text, sorted, each once: never the values."""
        from worker.engine.corpus.pii import detect  # its recognizers load on first use

        return sorted({found.type for found in detect(text, self.key)})


def _corpus_audit(access: Any, audit_id: str) -> Audit:
    """The linked audit, checked again here: the model audit's team must still see it."""
    with access.db.session() as session:
        found = session.get(Audit, audit_id)
        if found is not None:
            session.expunge(found)
    model_audit = access.audit
    if found is None or (found.team_id != model_audit.team_id and not _admin_submitted(access)):
        raise PermanentError(f"corpus_audit {audit_id}: no such audit this team can see")
    if found.status != AuditStatus.SUCCEEDED:
        raise PermanentError(f"corpus_audit {audit_id} is {found.status}, not succeeded")
    return found


def _admin_submitted(access: Any) -> bool:
    from core.models import ApiKey

    created_by = access.audit.created_by
    with access.db.session() as session:
        key = session.get(ApiKey, created_by) if created_by else None
        return bool(key is not None and key.is_admin)


def _duplication_params(corpus_audit: Audit) -> DuplicationParams:
    for check in corpus_audit.checks:
        if check["kind"] == "duplication":
            return DuplicationParams.model_validate(check.get("params") or {})
    raise PermanentError(f"corpus_audit {corpus_audit.id} ran no duplication check")


def _recorded_tokenizer(corpus_audit: Audit) -> str:
    """The tokenizer the dataset audit counted spans in, as its summary recorded it."""
    facts = ((corpus_audit.summary or {}).get("duplication") or {}).get("corpus") or {}
    names = facts.get("tokenizer") or (corpus_audit.provenance or {}).get("tokenizers") or []
    name = names if isinstance(names, str) else names[0] if len(names) == 1 else None
    if not name:
        raise PermanentError(
            f"corpus_audit {corpus_audit.id} recorded no single tokenizer: re-run it"
        )
    return name


def open_corpus_link(access: Any, audit_id: str) -> CorpusLink:
    """The corpus audit's exact index on this host, built here first if it has none."""
    if getattr(access, "db", None) is None:
        raise PermanentError("corpus_audit needs the service: a local audit has no audits to link")
    corpus_audit = _corpus_audit(access, audit_id)
    params = _duplication_params(corpus_audit)
    try:  # read under the model audit's grants, whether or not a rebuild needs it
        dataset = access.open_dataset(corpus_audit.dataset_uri)
    except (PermissionError, FileNotFoundError, ValueError) as exc:
        raise PermanentError(
            f"corpus_audit {audit_id}: its dataset {corpus_audit.dataset_uri} is not readable "
            f"by this audit's team ({exc})"
        ) from None

    # A rebuild reads a copy whose bytes must hash to what the dataset audit read
    # (`Corpus.build_with`).
    corpus = Corpus(
        sha256=corpus_audit.dataset_sha256,
        data_dir=access.settings.data_dir,
        path=dataset,
        n_records=corpus_audit.n_samples,
        model_uri=corpus_audit.model_uri,
        access=access,
    )
    name = _recorded_tokenizer(corpus_audit)
    corpus._tokenizer = (name, _RecordedTokenizer(name, lambda: _load_tokenizer(corpus)))
    index = exact_index(corpus, params.min_repeat_tokens, params.top_spans)
    info = {
        "corpus_audit": audit_id,
        "dataset_sha256": corpus_audit.dataset_sha256,
        "tokenizer": name,
        "index": corpus.info["artefacts"][EXACT_ARTEFACT],
    }
    key = corpus.display().key
    return CorpusLink(audit_id, index, key, info)


def _load_tokenizer(corpus: Corpus) -> tuple[str, Any]:
    from worker.checks.dataset.tokenizer import corpus_tokenizer

    return corpus_tokenizer(corpus.access, corpus.model_uri)


def _window_of(sample: LMSample, offset: int) -> Any:
    return next(window for window in sample.windows if window.offset == offset)


def extraction_values(
    link: CorpusLink, sample: LMSample, row: dict[str, Any], decode: Callable[[Sequence[int]], str]
) -> dict[str, Any]:
    """Corpus counts of the reported window, whole and by half, and its PII types."""
    if row.get("skipped"):
        return {}
    window = _window_of(sample, row["best_window_offset"])
    text = decode([*window.prefix_ids, *window.suffix_ids])
    return {
        "corpus_count": link.count(text),
        "corpus_count_prefix": link.count(decode(window.prefix_ids)),
        "corpus_count_suffix": link.count(decode(window.suffix_ids)),
        "pii": link.pii_types(text),
    }


def membership_values(link: CorpusLink, scored_text: str) -> dict[str, Any]:
    """The corpus count of the scored text and its PII types."""
    return {"corpus_count": link.count(scored_text), "pii": link.pii_types(scored_text)}


def annotate(
    kind: str,
    link: CorpusLink,
    samples: Sequence[LMSample],
    scored_texts: Sequence[str],
    rows: list[dict[str, Any]],
    decode: Callable[[Sequence[int]], str],
) -> None:
    """Add the corpus values to each record's row of an extraction or membership check."""
    for sample, scored, row in zip(samples, scored_texts, rows, strict=True):
        if kind == "extraction":
            row.update(extraction_values(link, sample, row, decode))
        elif kind == "membership":
            row.update(membership_values(link, scored))
