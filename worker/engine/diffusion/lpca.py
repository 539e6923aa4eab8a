"""Model-free local intrinsic dimension by local PCA (the `FO` version of skdim's lPCA): in each
point's neighbourhood, the number of covariance eigenvalues above α × the largest.

Queries off the data take the LID of their nearest data point, as in Ross et al.'s comparison
of LID_θ (FLIPD, the model's) with LID_* (the data's).
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import NearestNeighbors

DEFAULT_ALPHA = 0.05
DEFAULT_NEIGHBORS = 1000


def local_pca_dimension(neighbourhood: np.ndarray, alpha: float = DEFAULT_ALPHA) -> int:
    centred = neighbourhood - neighbourhood.mean(axis=0)
    singular = np.linalg.svd(centred, compute_uv=False)
    variances = singular**2
    if variances.size == 0 or variances[0] <= 0:
        return 0
    return int((variances > alpha * variances[0]).sum())


def lpca(
    data: np.ndarray,
    n_neighbors: int = DEFAULT_NEIGHBORS,
    alpha: float = DEFAULT_ALPHA,
    queries: np.ndarray | None = None,
) -> np.ndarray:
    """LID of every data point (or of each query's nearest data point)."""
    data = np.asarray(data, dtype=np.float64).reshape(len(data), -1)
    if len(data) < 2:
        raise ValueError("local PCA needs at least two points")
    k = min(n_neighbors, len(data))
    index = NearestNeighbors(n_neighbors=k).fit(data)
    _, neighbours = index.kneighbors(data)
    dims = np.array([local_pca_dimension(data[row], alpha) for row in neighbours])
    if queries is None:
        return dims
    queries = np.asarray(queries, dtype=np.float64).reshape(len(queries), -1)
    _, nearest = NearestNeighbors(n_neighbors=1).fit(data).kneighbors(queries)
    return dims[nearest[:, 0]]
