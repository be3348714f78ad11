"""Array helpers the hot paths share."""

from __future__ import annotations

import numpy as np


def distinct(values: np.ndarray) -> np.ndarray:
    """`np.unique(values)` of a 1-D array, by one sort: numpy 2.3+ answers a plain
    `np.unique` with a hash table, 10-60x slower than sorting on millions of integers."""
    ordered = np.sort(values)
    if not len(ordered):
        return ordered
    return ordered[np.concatenate([[True], ordered[1:] != ordered[:-1]])]


def first_positions(keys: np.ndarray) -> np.ndarray:
    """For each row, the position of the first row with the same key (by one stable
    sort, like `distinct`)."""
    order = np.argsort(keys, kind="stable")
    ordered = keys[order]
    starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]])) \
        if len(keys) else np.zeros(0, dtype=np.int64)
    first = np.empty(len(keys), dtype=np.int64)
    first[order] = np.repeat(order[starts], np.diff(np.append(starts, len(keys))))
    return first


def repeated_values(keys: np.ndarray) -> np.ndarray:
    """The distinct values that occur more than once in `keys`."""
    ordered = np.sort(keys)
    twice = ordered[1:][ordered[1:] == ordered[:-1]]
    return distinct(twice)
