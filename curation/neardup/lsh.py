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
    codes = np.empty(0, dtype=np.uint64)  # pair (i, j) as i << 32 | j, unique
    oversized = 0
    members_of = items.astype(np.uint64)
    for band in range(band_keys.shape[1]):
        order = np.lexsort((items, band_keys[:, band]))  # by bucket, then item
        keys, members = band_keys[order, band], members_of[order]
        starts = np.flatnonzero(np.concatenate([[True], keys[1:] != keys[:-1]]))
        sizes = np.diff(np.concatenate([starts, [len(keys)]]))
        oversized += int((sizes > max_bucket).sum())
        # Each member with the one `offset` places on in its bucket, for every offset at
        # once over the whole band (no loop over buckets); merged band by band, so memory
        # holds the distinct pairs and one band's, not every band's repeats.
        found = [codes]
        for offset in range(1, min(int(sizes.max(initial=1)), max_bucket + 1)):
            same = keys[offset:] == keys[:-offset]
            found.append((members[:-offset][same] << np.uint64(32)) | members[offset:][same])
        codes = np.unique(np.concatenate(found))
    pairs = np.column_stack([codes >> np.uint64(32), codes & np.uint64(0xFFFFFFFF)])
    return pairs.astype(np.int64).reshape(-1, 2), oversized
