"""Paraphrase families: embedding neighbours, joined with MinHash clusters and declared keys.

Neighbours come from a faiss index of normalised vectors (inner product = cosine): exact
search up to `exact_search_limit` items, an IVF index beyond (trained with a fixed seed,
so the same vectors give the same neighbours). A cosine threshold joined transitively
chains unrelated prompts through neighbours of neighbours ("steal data" -> "share explicit
photos" -> "send threats"), so similarity links are taken strongest first, and two
families join only when their centres (the mean of their vectors) are themselves at the
threshold and the result stays within `max_family_size` (centroid linkage, bounded).
Declared keys and MinHash clusters always join.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from curation.core.arrays import distinct
from curation.neardup.clusters import components


@dataclass(frozen=True)
class SearchParams:
    neighbours: int
    exact_search_limit: int
    ivf_probes: int
    num_threads: int

    @classmethod
    def of(cls, params: Any) -> SearchParams:
        """The search settings of `families` params."""
        return cls(params.neighbours, params.exact_search_limit, params.ivf_probes,
                   params.num_threads)


def index_for(vectors: np.ndarray, params: SearchParams) -> Any:
    """A faiss inner-product index holding `vectors`: flat (exact) or IVF (approximate)."""
    import faiss

    faiss.omp_set_num_threads(params.num_threads)
    n, dim = vectors.shape
    if n <= params.exact_search_limit:
        index = faiss.IndexFlatIP(dim)
    else:
        cells = int(4 * np.sqrt(n))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, cells,
                                   faiss.METRIC_INNER_PRODUCT)
        index.cp.seed = 1234
        index.train(vectors)
        index.nprobe = min(params.ivf_probes, cells)
    index.add(vectors)
    return index


def neighbours(vectors: np.ndarray, params: SearchParams,
               threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (i < j) among each item's nearest neighbours with cosine >= `threshold`, and
    their cosines; each pair once."""
    n = len(vectors)
    if n < 2:
        return np.empty((0, 2), dtype=np.int64), np.empty(0, dtype=np.float32)
    index = index_for(vectors, params)
    k = min(params.neighbours + 1, n)
    found_i, found_j = [], []
    for start in range(0, n, _QUERY_BLOCK):
        scores, ids = index.search(vectors[start:start + _QUERY_BLOCK], k)
        rows = np.repeat(np.arange(start, start + len(ids)), k)
        cols, sims = ids.ravel(), scores.ravel()
        keep = (cols >= 0) & (cols != rows) & (sims >= threshold)
        found_i.append(np.minimum(rows[keep], cols[keep]))
        found_j.append(np.maximum(rows[keep], cols[keep]))
    pairs = np.column_stack([np.concatenate(found_i), np.concatenate(found_j)]).astype(np.int64)
    pairs = np.unique(pairs, axis=0)
    scores = cosines(vectors, pairs)
    keep = scores >= threshold  # the index's float32 score may sit a hair above
    return pairs[keep], scores[keep]


def cosines(vectors: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Each pair's cosine, computed the same way whichever side found it (a block of pairs
    at a time, so memory stays flat however many pairs there are)."""
    scores = np.empty(len(pairs), dtype=np.float32)
    for start in range(0, len(pairs), _PAIR_BLOCK):
        block = pairs[start:start + _PAIR_BLOCK]
        scores[start:start + len(block)] = np.einsum(
            "ij,ij->i", vectors[block[:, 0]].astype(np.float64),
            vectors[block[:, 1]].astype(np.float64))
    return scores


_QUERY_BLOCK = 8192
_PAIR_BLOCK = 65_536


@dataclass
class Families:
    labels: np.ndarray       # family label per row: the smallest row in its family
    stats: dict[str, Any]


def link(vectors: np.ndarray, fixed: np.ndarray, pairs: np.ndarray, scores: np.ndarray,
         threshold: float, max_size: int) -> Families:
    """Families of the rows of `vectors`: `fixed` (row, row) edges always join; similarity
    `pairs` join strongest first when the two families' centres are at `threshold` and the
    joined family has at most `max_size` rows."""
    n = len(vectors)
    base = components(np.concatenate([np.column_stack([np.arange(n), np.arange(n)]),
                                      fixed]).astype(np.int64), n) if n else np.empty(0, int)
    parent = base.copy()
    size = np.bincount(base, minlength=n)
    centre = _Centres(vectors, base, size)
    order = np.lexsort((pairs[:, 1], pairs[:, 0], -scores)) if len(pairs) else []
    refused = Counter()
    joined = 0

    def root(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for e in order:
        a, b = root(int(pairs[e, 0])), root(int(pairs[e, 1]))
        if a == b:
            continue
        if size[a] + size[b] > max_size:
            refused["size"] += 1
            continue
        if size[a] + size[b] > 2:
            ca, cb = centre[a], centre[b]
            if ca @ cb < threshold * np.sqrt((ca @ ca) * (cb @ cb)):
                refused["centre"] += 1
                continue
        a, b = min(a, b), max(a, b)
        parent[b] = a
        size[a] += size[b]
        centre.join(a, b)
        joined += 1
    labels = np.array([root(i) for i in range(n)], dtype=np.int64)
    sizes = Counter(Counter(labels.tolist()).values())
    return Families(labels, {
        "families": int(len(distinct(labels))) if n else 0,
        "largest_family": max(sizes) if sizes else 0,
        "size_distribution": {str(s): sizes[s] for s in sorted(sizes)},
        "similarity_links": int(len(pairs)), "links_joining_families": joined,
        "links_refused_by_centre": refused["centre"],
        "links_refused_by_size": refused["size"],
    })


class _Centres:
    """The float64 sum of each family's vectors, held only for families of several items
    (a lone item's is its own vector: a full float64 copy of every vector took 0.5 GB at
    163K items). Sums add in row order, as one `np.add.at` over every row did."""

    def __init__(self, vectors: np.ndarray, base: np.ndarray, size: np.ndarray) -> None:
        self.vectors = vectors
        several = np.flatnonzero(size[base] > 1)
        roots = distinct(base[several])
        sums = np.zeros((len(roots), vectors.shape[1]), dtype=np.float64)
        np.add.at(sums, np.searchsorted(roots, base[several]), vectors[several])
        self.sums = dict(zip(roots.tolist(), sums, strict=True))

    def __getitem__(self, root: int) -> np.ndarray:
        found = self.sums.get(root)
        return found if found is not None else self.vectors[root].astype(np.float64)

    def join(self, a: int, b: int) -> None:
        """Family `b` joins family `a`."""
        self.sums[a] = self[a] + self[b]
        self.sums.pop(b, None)


def nearest(queries: np.ndarray, vectors: np.ndarray,
            params: SearchParams) -> tuple[np.ndarray, np.ndarray]:
    """For each query, the row of its most similar vector and the cosine (-1 when none),
    the cosine computed in float64 as `cosines` does."""
    if len(vectors) == 0 or len(queries) == 0:
        return np.full(len(queries), -1, dtype=np.int64), np.full(len(queries), -1.0)
    index = index_for(vectors, params)
    rows = np.concatenate([index.search(queries[start:start + _QUERY_BLOCK], 1)[1][:, 0]
                           for start in range(0, len(queries), _QUERY_BLOCK)]).astype(np.int64)
    scores = np.full(len(queries), -1.0)
    for start in range(0, len(queries), _PAIR_BLOCK):
        block = np.arange(start, min(start + _PAIR_BLOCK, len(queries)))
        block = block[rows[block] >= 0]  # an IVF search may come back empty
        scores[block] = np.einsum("ij,ij->i", queries[block].astype(np.float64),
                                  vectors[rows[block]].astype(np.float64))
    return rows, scores
