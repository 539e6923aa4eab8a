"""The blind baseline (Das, Zhang & Tramèr 2024): how well members are told from non-members
from the texts alone, without the model. When a model-free classifier separates the two sets,
the split, not the model, is what a membership score measures.

Features are what such confounds are made of: word uni- and bigrams (word order), character
2-5-grams (spelling, punctuation, formatting), tf-idf weighted, and a few dense statistics
(length, years and dates, digits, capitals, word length, type-token ratio). One logistic
regression over all of them is cross-validated (stratified, seeded); each record's score comes
from the fold that did not see it, so the AUROC and its bootstrap CI are those of
`membership_report`, like any score.

The readings (METRICS.md §3, as this project states them, with `DELTA`):
- a split is `confounded` when the blind AUROC's lower CI bound exceeds 0.5 + δ, or its upper
  bound lies below 0.5 − δ (labels tied to structure: see `split_reading`);
- a score shows `no_membership_signal` only when its AUROC's upper CI bound is below 0.5 + δ,
  is `underpowered` when its CI straddles 0.5 + δ, and otherwise `stands`.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

from worker.engine.membership import ResampledRoc, membership_report

DELTA = 0.05  # how far above chance an AUROC must be to count as a signal
FOLDS = 5
MAX_CHARS = 4096  # of each text, read by the classifier
BOOTSTRAP = 1000  # the blind baseline's own resamples, whatever a check's params ask
HASHED_FEATURES = 2**20  # per block: collisions are rare at this size
# The L2 penalty: a weaker one overfits the folds, and an IID split reads AUROC < 0.5.
ALPHA = 1e-4
EPOCHS = 15
YEAR = re.compile(r"\b(1[5-9]\d\d|20\d\d)\b")
DATE = re.compile(r"\b\d{1,4}[-/.]\d{1,2}[-/.]\d{1,4}\b")
WORD = re.compile(r"\w+", re.UNICODE)
DENSE_FEATURES = (
    "log_chars",
    "log_words",
    "years",
    "latest_year",
    "dates",
    "digit_share",
    "capital_share",
    "mean_word_length",
    "type_token_ratio",
)


def dense_features(text: str) -> list[float]:
    """The statistics a confound of length, period or formatting shows in (DENSE_FEATURES)."""
    words = WORD.findall(text)
    years = [int(y) for y in YEAR.findall(text)]
    letters = sum(c.isalpha() for c in text)
    return [
        math.log1p(len(text)),
        math.log1p(len(words)),
        float(len(years)),
        (max(years) - 1900) / 100 if years else 0.0,
        float(len(DATE.findall(text))),
        sum(c.isdigit() for c in text) / max(len(text), 1),
        sum(c.isupper() for c in text) / max(letters, 1),
        sum(map(len, words)) / max(len(words), 1),
        len({w.lower() for w in words}) / max(len(words), 1),
    ]


def _counts(texts: Sequence[str]) -> tuple[Any, Any]:
    """Word 1-2-gram and character 2-5-gram counts, hashed: hashing fits nothing, so counting
    every record once leaks nothing between folds (the weights below are fitted per fold)."""
    from sklearn.feature_extraction.text import HashingVectorizer

    common = {"n_features": HASHED_FEATURES, "alternate_sign": False, "norm": None}
    words = HashingVectorizer(ngram_range=(1, 2), **common)
    chars = HashingVectorizer(analyzer="char_wb", ngram_range=(2, 5), **common)
    return words.transform(texts), chars.transform(texts)


def _fold_features(
    blocks: Sequence[Any], dense: np.ndarray, train: np.ndarray, test: np.ndarray
) -> tuple[Any, Any]:
    """Idf weights and scales fitted on the training fold only: nothing of a held-out record
    reaches the model that scores it."""
    from scipy.sparse import csr_matrix, hstack
    from sklearn.feature_extraction.text import TfidfTransformer
    from sklearn.preprocessing import StandardScaler

    fitted, held = [], []
    for block in blocks:
        weights = TfidfTransformer(sublinear_tf=True).fit(block[train])
        fitted.append(weights.transform(block[train]))
        held.append(weights.transform(block[test]))
    scale = StandardScaler().fit(dense[train])
    fitted.append(csr_matrix(scale.transform(dense[train])))
    held.append(csr_matrix(scale.transform(dense[test])))
    return hstack(fitted).tocsr(), hstack(held).tocsr()


def _folds(labels: np.ndarray) -> int:
    """As many folds as the smaller side allows, at most FOLDS."""
    folds = min(FOLDS, int(labels.sum()), int((~labels).sum()))
    if folds < 2:
        raise ValueError("the blind baseline needs at least 2 members and 2 non-members")
    return folds


def _clipped(texts: Sequence[str]) -> list[str]:
    """Each text's first MAX_CHARS characters: a confound of style, period or format shows
    there, and the cost stays bounded whatever the documents' length."""
    return [text[:MAX_CHARS] for text in texts]


def blind_scores(
    texts: Sequence[str],
    members: Sequence[bool],
    seed: int = 0,
    groups: Sequence[int] | None = None,
    penalty: float | None = None,
) -> np.ndarray:
    """Each record's out-of-fold P(member) from the texts alone.

    Records of one group (a matched pair) stay in one fold: a pair split across folds teaches
    the classifier its partner's label right where the held-out record lies, and reads below
    0.5 on a split that carries no signal. `penalty` is the L2 weight (ALPHA detects; a
    smoother propensity for matching wants more).

    The classifier is logistic regression fitted by averaged stochastic gradient descent (a
    fixed number of epochs, seeded): on 10,000 records it takes a fifth of the time of an
    exact solver, and a confound strong enough to matter is found by either."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import SGDClassifier
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    labels = np.asarray(members, dtype=bool)
    scores = np.empty(len(texts), dtype=np.float64)
    folds = _folds(labels)
    if groups is None:
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    else:
        splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)
    texts = _clipped(texts)
    blocks = _counts(texts)
    dense = np.asarray([dense_features(t) for t in texts], dtype=np.float64)
    for train, test in splitter.split(np.zeros(len(labels)), labels, groups):
        x_train, x_test = _fold_features(blocks, dense, train, test)
        model = SGDClassifier(
            loss="log_loss",
            alpha=ALPHA if penalty is None else penalty,
            max_iter=EPOCHS,
            tol=None,
            average=True,
            random_state=seed,
        )
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(x_train, labels[train])
        scores[test] = model.predict_proba(x_test)[:, 1]
    return scores


def blind_baseline(
    texts: Sequence[str],
    members: Sequence[bool],
    *,
    bootstrap: int = 1000,
    seed: int = 0,
    groups: Sequence[int] | None = None,
) -> dict[str, Any]:
    """The blind classifier's AUROC and TPR at low FPR with bootstrap CIs, and the reading."""
    scores = blind_scores(texts, members, seed, groups)
    return blind_report(scores, members, bootstrap=bootstrap, seed=seed)


def blind_report(
    scores: Sequence[float], members: Sequence[bool], *, bootstrap: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """The report of out-of-fold blind scores (`blind_scores`), as for any membership score."""
    values, labels = np.asarray(scores, dtype=np.float64), np.asarray(members, dtype=bool)
    report = membership_report(
        values[labels].tolist(), values[~labels].tolist(), bootstrap=bootstrap, seed=seed
    )
    report.pop("roc", None)
    report["reading"] = split_reading(report["auroc"]["ci95"])
    if report["reading"] == "not_assessed":
        report["reason"] = "the blind AUROC has no confidence interval (no bootstrap)"
    report["method"] = {
        "classifier": f"logistic regression (L2 {ALPHA:g}, averaged SGD, {EPOCHS} epochs)",
        "features": ["word 1-2-grams", "character 2-5-grams", *DENSE_FEATURES],
        "folds": _folds(labels),
        "delta": DELTA,
    }
    return report


def split_reading(blind_ci: Sequence[float | None]) -> str:
    """`confounded`, or `no_confound_detected` (never "not confounded": the baseline sees only
    what its features can).

    Below chance counts too: when labels are exchangeable given the texts, a cross-validated
    classifier scores near 0.5; one that does reliably *worse* has found structure tied to the
    labels. That is what non-members derived from members look like (shuffled or paraphrased
    copies): each held-out record's twin sits in the training fold with the other label."""
    low, high = blind_ci
    if low is None or high is None:
        return "not_assessed"  # no CI (no bootstrap): nothing can be read either way
    if low > 0.5 + DELTA:
        return "confounded"
    if high < 0.5 - DELTA:
        return "confounded"
    return "no_confound_detected"


def score_reading(
    auroc: float | None, ci: Sequence[float | None], n_records: int, confounded: bool
) -> dict[str, Any]:
    """What one score's AUROC may be taken to say on this split."""
    if confounded:
        return {"reading": "inconclusive", "why": "the split is confounded"}
    low, high = ci
    if auroc is None or low is None or high is None:
        return {"reading": "inconclusive", "why": "no confidence interval"}
    if high < 0.5 - DELTA:
        # Members reliably *less* member-like than non-members: not an absence of signal but
        # a sign of mislabelled or contaminated non-members.
        why = "the score ranks non-members above members beyond chance: check the labels"
        return {"reading": "inconclusive", "why": why}
    line = 0.5 + DELTA
    if high < line:
        return {"reading": "no_membership_signal"}
    if low > line:
        return {"reading": "stands"}
    # The CI's width shrinks as 1/sqrt(n): the records at which its side facing the line
    # would no longer reach it (the percentile CI need not be symmetric).
    facing = auroc - low if auroc > line else high - auroc
    distance = abs(auroc - line)
    needed = math.ceil(n_records * (facing / distance) ** 2) if distance > 0 else None
    return {
        "reading": "underpowered",
        "records_needed": None if needed is None else max(needed, n_records + 1),
    }


def paired_margin(
    score: Sequence[float],
    blind: Sequence[float],
    members: Sequence[bool],
    *,
    bootstrap: int = 1000,
    seed: int = 0,
) -> dict[str, Any]:
    """AUROC(score) − AUROC(blind) with a paired bootstrap CI: records are resampled once per
    draw for both, within members and within non-members."""
    values, baseline = np.asarray(score, float), np.asarray(blind, float)
    labels = np.asarray(members, dtype=bool)
    n_members, n_others = int(labels.sum()), int((~labels).sum())
    of_score = ResampledRoc(values[labels], values[~labels])
    of_blind = ResampledRoc(baseline[labels], baseline[~labels])

    def margin(member_draw: np.ndarray, other_draw: np.ndarray) -> float:
        return of_score(member_draw, other_draw).auc - of_blind(member_draw, other_draw).auc

    point = margin(np.arange(n_members), np.arange(n_others))
    rng = np.random.default_rng(seed)
    draws = [
        margin(rng.integers(0, n_members, n_members), rng.integers(0, n_others, n_others))
        for _ in range(bootstrap)
    ]
    ci = np.percentile(draws, [2.5, 97.5]).tolist() if bootstrap else [None, None]
    return {"value": point, "ci95": ci, "bootstrap": bootstrap, "seed": seed}
