"""Scoring an unlearned classifier (METRICS.md §5): accuracies on the forget, retain and test
sets, Tug-of-War against a model retrained without the forget set, and membership attacks.

>>> round(tug_of_war({"forget": 90, "retain": 99, "test": 88},
...                  {"forget": 85, "retain": 98, "test": 90}), 5)
0.92169
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from worker.engine.proxies import CLAMP

SPLITS = ("forget", "retain", "test")


def tug_of_war(unlearned: Mapping[str, float], retrained: Mapping[str, float]) -> float:
    """Π over forget, retain and test of (1 − |Acc(θ_u) − Acc(θ_r)|/100), accuracies in %."""
    product = 1.0
    for split in SPLITS:
        product *= 1 - abs(unlearned[split] - retrained[split]) / 100
    return product


def tug_of_war_mia(
    unlearned: Mapping[str, float],
    retrained: Mapping[str, float],
    mia_unlearned: float,
    mia_retrained: float,
) -> float:
    """ToW with the forget-accuracy factor replaced by 1 − |MIA(θ_u) − MIA(θ_r)| (MIA in [0, 1])."""
    product = 1 - abs(mia_unlearned - mia_retrained)
    for split in ("retain", "test"):
        product *= 1 - abs(unlearned[split] - retrained[split]) / 100
    return product


def mia_features(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Confidence, entropy and modified entropy (Song & Mittal 2021) per example: the inputs of
    RUM's SVC attack."""
    p = np.clip(np.asarray(probs, dtype=np.float64), CLAMP, 1 - CLAMP)
    y = np.asarray(labels, dtype=np.int64)
    rows = np.arange(len(y))
    true = p[rows, y]
    entropy = -(p * np.log(p)).sum(axis=1)
    others = p * np.log(1 - p)
    others[rows, y] = 0.0
    modified = -(1 - true) * np.log(true) - others.sum(axis=1)
    return np.stack([true, entropy, modified], axis=1)


def svc_mia(
    member_features: np.ndarray, nonmember_features: np.ndarray, target_features: np.ndarray
) -> float:
    """RUM's attack: an RBF SVC (C=3, gamma="auto") told retain (members) from test
    (non-members); the share of targets it calls members."""
    from sklearn.svm import SVC

    n = min(len(member_features), len(nonmember_features))
    if n == 0 or len(target_features) == 0:
        raise ValueError("the attack needs retain, test and forget examples")
    x = np.concatenate([member_features[:n], nonmember_features[:n]])
    y = np.concatenate([np.ones(n), np.zeros(n)])
    attack = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
    return float(attack.predict(target_features).mean())
