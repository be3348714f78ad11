"""LSH candidates: items that share a bucket in any band.

Bands are bucketed by sorting a column of band hashes rather than in per-item Python
dicts, so memory stays a few bytes per band per item.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from curation.core.arrays import distinct


class BucketNeighbours:
    """Pairs of items sharing a bucket, one (band, offset) at a time: each member with the
    member `offset` places before it in its bucket (in item order), for offsets 1, 2, ...

    A bucket larger than `max_bucket` pairs each member with its `max_bucket` preceding
    members only, which bounds the work; `oversized` counts such buckets once iterated.
    Nearest offsets come first, so a caller that joins items as it goes can skip the
    later pairs it has already joined.
    """

    def __init__(self, band_keys: np.ndarray, items: np.ndarray, max_bucket: int,
                 rows: np.ndarray | None = None) -> None:
        """`items`: ascending, one per row of `band_keys` bucketed; `rows`: those rows (a
        boolean mask; default all), picked a band at a time rather than copied whole."""
        if np.any(np.diff(items) <= 0):
            raise ValueError("bucket members must be given in ascending item order")
        self.band_keys, self.items, self.max_bucket = band_keys, items, max_bucket
        self.rows = rows
        self.oversized = 0
        self.band = 0  # the band being iterated

    def __iter__(self) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """(earlier, later) item arrays, earlier < later element-wise."""
        members_of = self.items.astype(np.int64)
        for band in range(self.band_keys.shape[1]):
            self.band = band
            column = self.band_keys[:, band]
            if self.rows is not None:
                column = column[self.rows]
            order = np.argsort(column, kind="stable")  # bucket, then item
            keys, members = column[order], members_of[order]
            starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
            sizes = np.diff(np.concatenate([starts, [len(keys)]]))
            self.oversized += int((sizes > self.max_bucket).sum())
            rank = np.arange(len(keys)) - np.repeat(starts, sizes)  # place in its bucket
            later = np.flatnonzero(rank >= 1)
            for offset in range(1, self.max_bucket + 1):
                later = later[rank[later] >= offset]
                if not len(later):
                    break
                yield members[later - offset], members[later]


def pair_codes(earlier: np.ndarray, later: np.ndarray) -> np.ndarray:
    """Pair (i, j) as the uint64 i << 32 | j."""
    return (earlier.astype(np.uint64) << np.uint64(32)) | later.astype(np.uint64)


def code_pairs(codes: np.ndarray) -> np.ndarray:
    """The inverse of `pair_codes`, as an (n, 2) int64 array."""
    pairs = np.column_stack([codes >> np.uint64(32), codes & np.uint64(0xFFFFFFFF)])
    return pairs.astype(np.int64).reshape(-1, 2)


def candidate_pairs(band_keys: np.ndarray, items: np.ndarray, max_bucket: int,
                    keep: Callable[[np.ndarray], np.ndarray] | None = None,
                    ) -> tuple[np.ndarray, int]:
    """Every pair of `BucketNeighbours` once, as (n, 2) with i < j in ascending order, and
    the count of oversized buckets. With `keep` (a mask of a block of pairs: a similarity
    check), only the pairs it keeps.

    Found in passes over ranges of the earlier item, each of about `_HELD_CANDIDATES`
    candidates (counted first), merged band by band: memory holds one pass's distinct
    candidates and the kept pairs, not every candidate (templated prompts at a low
    threshold have tens of millions).
    """
    counted = BucketNeighbours(band_keys, items, max_bucket)
    per_item = np.zeros(int(items.max()) + 1 if len(items) else 0, dtype=np.int64)
    for earlier, _ in counted:
        per_item += np.bincount(earlier, minlength=len(per_item))
    cuts = np.searchsorted(np.cumsum(per_item), np.arange(
        _HELD_CANDIDATES, per_item.sum(), _HELD_CANDIDATES), side="right")
    inner = distinct(cuts[(cuts > 0) & (cuts < len(per_item))])
    bounds = [0, *inner.tolist(), len(per_item)]
    kept = [np.empty((0, 2), dtype=np.int64)]
    for lo, hi in zip(bounds[:-1], bounds[1:], strict=True):
        codes = np.empty(0, dtype=np.uint64)
        found: list[np.ndarray] = []
        for earlier, later in BucketNeighbours(band_keys, items, max_bucket):
            inside = (earlier >= lo) & (earlier < hi)
            found.append(pair_codes(earlier[inside], later[inside]))
            if sum(map(len, found)) > max(len(codes), 1_000_000):
                codes = distinct(np.concatenate([codes, *found]))
                found = []
        pairs = code_pairs(distinct(np.concatenate([codes, *found])))
        kept.append(pairs if keep is None else pairs[keep(pairs)])
    return np.concatenate(kept), counted.oversized


_HELD_CANDIDATES = 8_000_000  # candidate pairs a pass of `candidate_pairs` holds (64 MB)
