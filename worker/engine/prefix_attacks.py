"""Prefix and calibration membership scores: ReCaLL, Con-ReCall and DC-PDD.

Each is oriented higher = more member-like, as the authors rank them:

- ReCaLL (Xie et al. 2024; ruoyuxie/recall@c2316410, src/run.py `inference`):
  LL(x|P_nonmember) / LL(x), LL the mean token log-likelihood. Both are negative; a non-member
  prefix lowers a member's likelihood more, so members score higher.
- Con-ReCall (Wang et al. 2024; WangCheng0116/CON-RECALL@8c2bb7e6, run.py):
  (LL(x|P_nonmember) - γ·LL(x|P_member)) / LL(x); the authors sweep γ over 0.1..1.0.
- DC-PDD (Zhang et al. 2024; zhang-wei-chao/DC-PDD@a4106479, com_det_sco.py `cal_met`,
  com_fre_dis.py): over the first occurrence of each token id in the text,
  α_t = min(p_t · log(1 / f(x_t)), a), with f the reference corpus's token frequencies
  Laplace-smoothed, (count + 1) / (total + |V|), and the cap a = 0.01; the score is mean α
  (the authors' `-mean`, ranked with its sign flipped).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

DC_PDD_CAP = 0.01  # the authors' default hyperparameter a


def recall_score(ll_nonmember_prefix: float, ll: float) -> float | None:
    """LL(x|P) / LL(x); None when LL(x) is 0 (a text the model finds certain)."""
    return ll_nonmember_prefix / ll if ll != 0 else None


def con_recall_score(
    ll_nonmember_prefix: float, ll_member_prefix: float, ll: float, gamma: float
) -> float | None:
    """(LL(x|P_nonmember) - γ·LL(x|P_member)) / LL(x); None when LL(x) is 0."""
    return (ll_nonmember_prefix - gamma * ll_member_prefix) / ll if ll != 0 else None


def token_counts(texts_ids: Iterable[Sequence[int]], vocab_size: int) -> np.ndarray:
    """Occurrences of each token id over the reference texts, (V,) int64."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    for ids in texts_ids:
        np.add.at(counts, np.asarray(ids, dtype=np.int64), 1)
    return counts


def smoothed_log_frequencies(counts: np.ndarray) -> np.ndarray:
    """log f with Laplace smoothing, f = (count + 1) / (total + |V|), (V,) float64."""
    return np.log((counts + 1.0) / (counts.sum() + len(counts)))


def first_occurrences(token_ids: Sequence[int]) -> np.ndarray:
    """Indices of the first time each token id appears in the sequence."""
    _, first = np.unique(np.asarray(token_ids, dtype=np.int64), return_index=True)
    return np.sort(first)


def dc_pdd_score(
    logprobs: np.ndarray,
    token_ids: Sequence[int],
    log_frequencies: np.ndarray,
    cap: float = DC_PDD_CAP,
) -> float | None:
    """mean over first occurrences of min(p_t · -log f(x_t), cap); `logprobs[t]` is
    log p(token_ids[t] | context). None for a text with no scored token.

    >>> round(dc_pdd_score(np.log([0.5, 0.5, 0.5]), [1, 2, 1], np.log([0.5, 0.25, 0.25])), 4)
    0.01
    """
    if len(token_ids) == 0:
        return None
    first = first_occurrences(token_ids)
    ids = np.asarray(token_ids, dtype=np.int64)[first]
    alpha = np.exp(np.asarray(logprobs, dtype=np.float64)[first]) * -log_frequencies[ids]
    return float(np.minimum(alpha, cap).mean())
