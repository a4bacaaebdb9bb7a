"""``linear_sum_assignment``: the tracker's Hungarian matching in numpy alone.

Why not scipy: the AWS Lambdas import the tracker, and scipy adds 105-120 MB unzipped to an OpenCV layer
already near Lambda's 250 MB limit. The cost matrices are small (people x tracks), so a shortest augmenting
path solver in Python is fast enough, and it follows scipy's (Crouse 2016, as ``scipy.optimize``
implements it) step for step, ties included, so the same matrix gives the same pairs, the same order.
"""

from __future__ import annotations

import numpy as np


def linear_sum_assignment(cost_matrix, maximize: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of a minimum (or maximum) cost full assignment, as scipy's function returns them:
    row indices ascending (columns ascending when the matrix is tall), one pair per shorter side."""
    cost = np.asarray(cost_matrix)
    if cost.ndim != 2:
        raise ValueError(f"expected a matrix (2-D array), got a {cost.ndim} array")
    if not (np.issubdtype(cost.dtype, np.number) or cost.dtype == np.bool_):
        raise ValueError(f"expected a matrix containing numerical entries, got {cost.dtype}")
    cost = cost.astype(np.float64)
    if cost.size == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy()
    transpose = cost.shape[1] < cost.shape[0]
    if transpose:
        cost = cost.T
    if maximize:
        cost = -cost
    if np.isnan(cost).any() or np.isneginf(cost).any():
        raise ValueError("matrix contains invalid numeric entries")
    col4row = _solve(np.ascontiguousarray(cost))
    if col4row is None:
        raise ValueError("cost matrix is infeasible")
    if transpose:
        order = np.argsort(col4row, kind="stable")
        return col4row[order], order.astype(np.int64)
    return np.arange(len(col4row), dtype=np.int64), col4row


def _solve(cost: np.ndarray) -> np.ndarray | None:
    """Column of each row (rows <= columns), or None when no finite assignment exists."""
    n_rows, n_cols = cost.shape
    u = np.zeros(n_rows)
    v = np.zeros(n_cols)
    path = np.full(n_cols, -1, dtype=np.int64)
    col4row = np.full(n_rows, -1, dtype=np.int64)
    row4col = np.full(n_cols, -1, dtype=np.int64)
    for current in range(n_rows):
        found = _augmenting_path(cost, u, v, path, row4col, current)
        if found is None:
            return None
        sink, min_value, shortest, rows_seen, cols_seen = found
        # Dual update, then flip the path's pairs.
        u[current] += min_value
        others = rows_seen.copy()
        others[current] = False
        u[others] += min_value - shortest[col4row[others]]
        v[cols_seen] -= min_value - shortest[cols_seen]
        column = sink
        while True:
            row = path[column]
            row4col[column] = row
            col4row[row], column = column, col4row[row]
            if row == current:
                break
    return col4row


def _augmenting_path(cost, u, v, path, row4col, row):
    n_rows, n_cols = cost.shape
    min_value = 0.0
    # Columns not yet on the path, first filled in reverse order (a constant matrix gives the identity).
    remaining = np.arange(n_cols - 1, -1, -1, dtype=np.int64)
    shortest = np.full(n_cols, np.inf)
    rows_seen = np.zeros(n_rows, dtype=bool)
    cols_seen = np.zeros(n_cols, dtype=bool)
    while True:
        rows_seen[row] = True
        reduced = min_value + cost[row, remaining] - u[row] - v[remaining]
        better = reduced < shortest[remaining]
        path[remaining[better]] = row
        shortest[remaining[better]] = reduced[better]
        candidates = shortest[remaining]
        lowest = candidates.min()
        if lowest == np.inf:
            return None
        # A scan in order keeps the first minimum, then moves to any later minimum that is a free column.
        at_lowest = np.flatnonzero(candidates == lowest)
        free = at_lowest[row4col[remaining[at_lowest]] == -1]
        index = int(free[-1]) if len(free) else int(at_lowest[0])
        min_value = float(lowest)
        column = int(remaining[index])
        cols_seen[column] = True
        remaining[index] = remaining[-1]
        remaining = remaining[:-1]
        if row4col[column] == -1:
            return column, min_value, shortest, rows_seen, cols_seen
        row = int(row4col[column])
