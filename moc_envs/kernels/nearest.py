"""Which (row, centroid) pairs a nearest-centroid classifier must measure exactly.

:func:`moc_envs.perception.classifier.centroid_distances` estimates every squared distance with
one float64 product, then computes the exact float32 norms only of the pairs close to their row's
nearest centroid of the same category. Picking those pairs took a sort, a grouped minimum and a
mask over the (M, K) table in NumPy, several calls each worth more than the loop below.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["near_pairs"]


@njit(cache=True, nogil=True)
def near_pairs(
    approx: np.ndarray, group: np.ndarray, groups: int, norms: np.ndarray, rel: float, absolute: float
) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns (row-major order) of the entries of ``approx`` (M, K) float64 within
    ``min * (1 + rel) + absolute * (norms[m] + 1)`` of their row's minimum over the columns of
    the same ``group`` (K,) (``0 <= group < groups``)."""
    m, k = approx.shape
    lowest = np.full((m, groups), np.inf)
    for i in range(m):
        for j in range(k):
            if approx[i, j] < lowest[i, group[j]]:
                lowest[i, group[j]] = approx[i, j]
    rows = np.empty(m * k, np.int64)
    cols = np.empty(m * k, np.int64)
    n = 0
    for i in range(m):
        slack = absolute * (norms[i] + 1.0)
        for j in range(k):
            if approx[i, j] <= lowest[i, group[j]] * (1.0 + rel) + slack:
                rows[n] = i
                cols[n] = j
                n += 1
    return rows[:n], cols[:n]
