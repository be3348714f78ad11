"""LSH candidates: items that share a bucket in any band.

Bands are bucketed by sorting a column of band hashes rather than in per-item Python
dicts, so memory stays a few bytes per band per item.
"""

from __future__ import annotations

import numpy as np


def candidate_pairs(band_keys: np.ndarray, items: np.ndarray,
                    max_bucket: int) -> tuple[np.ndarray, int]:
    """Pairs of items sharing a bucket in any band, each pair once, as (n, 2) with i < j.

    A bucket larger than `max_bucket` pairs each member with its `max_bucket` following
    members only (in item order), which bounds the work; the count of such buckets is
    returned with the pairs.
    """
    found: list[np.ndarray] = []
    oversized = 0
    for band in range(band_keys.shape[1]):
        order = np.argsort(band_keys[:, band], kind="stable")
        keys = band_keys[order, band]
        edges = np.flatnonzero(np.diff(keys)) + 1
        starts = np.concatenate([[0], edges])
        sizes = np.diff(np.concatenate([starts, [len(keys)]]))
        for start, size in zip(starts[sizes > 1], sizes[sizes > 1], strict=True):
            members = np.sort(items[order[start:start + size]])
            oversized += size > max_bucket
            for offset in range(1, min(size, max_bucket + 1)):
                found.append(np.column_stack([members[:-offset], members[offset:]]))
    if not found:
        return np.empty((0, 2), dtype=np.int64), oversized
    pairs = np.concatenate(found).astype(np.int64)
    return np.unique(pairs, axis=0), oversized
