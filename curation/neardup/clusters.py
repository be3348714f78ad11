"""Near-duplicate clusters: exact groups, then LSH candidates checked by true Jaccard,
joined into connected components (scipy)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from curation.core.progress import bar
from curation.neardup.lsh import BucketNeighbours
from curation.neardup.minhash import SHINGLE_KINDS, MinHashParams, Sketches, band_keys


@dataclass
class Clusters:
    labels: np.ndarray      # cluster label per row: the smallest row index in its cluster
    stats: dict[str, Any]   # shingle kinds, LSH figures, checked and verified pairs


def cluster(sketches: Sketches, params: MinHashParams, max_bucket: int,
            threads: int = 1, keys: np.ndarray | None = None) -> Clusters:
    """Rows are joined when their text keys are equal, or when LSH makes them candidates
    and their true Jaccard similarity is at least `params.threshold`.

    Candidates are checked nearest bucket neighbours first; a pair whose set sizes rule
    the threshold out (`Sketches.may_reach`), or whose rows are already joined (through
    other pairs), is not checked: components come out the same as
    checking every candidate, but a bucket of thousands of copies (templated prompts)
    costs one check per member instead of one per member and neighbour and band.
    Checks run on `threads` threads. `keys`: the band keys of the signatures, when the
    sketches hold those instead (`search_index`).
    """
    n = len(sketches)
    _, first, inverse = np.unique(sketches.exact, return_index=True, return_inverse=True)
    labels = first[inverse.ravel()].astype(np.int64)  # smallest row of each exact group

    heads = np.zeros(n, dtype=bool)
    heads[first] = True
    keep = heads[sketches.sketched]
    if keys is None:
        keys = band_keys(sketches.signatures, params.bands)
    neighbours = BucketNeighbours(keys, sketches.sketched[keep], max_bucket, rows=keep)
    candidates = checked = verified = 0
    with bar(None, "near-duplicate search", unit=" candidate pairs") as shown:
        for earlier, later in neighbours:
            apart = labels[earlier] != labels[later]  # each pair once within one iteration
            if not apart.any():
                continue
            pairs = np.column_stack([earlier[apart], later[apart]])
            possible = sketches.may_reach(pairs, params.threshold)
            similar = np.zeros(len(pairs), dtype=bool)
            similar[possible] = sketches.jaccards(pairs[possible], threads) >= params.threshold
            candidates += len(pairs)
            checked += int(possible.sum())
            verified += int(similar.sum())
            labels = joined(labels, pairs[similar])
            shown.set_description(f"near-duplicate search (band {neighbours.band + 1} of "
                                  f"{params.bands[0]})", refresh=False)
            shown.update(len(pairs))
    kinds = np.bincount(sketches.kinds, minlength=len(SHINGLE_KINDS))
    stats = {
        "shingle_kinds": {kind: int(kinds[k]) for k, kind in enumerate(SHINGLE_KINDS)},
        "lsh_bands": params.bands[0], "lsh_rows_per_band": params.bands[1],
        "candidate_pairs": candidates, "checked_pairs": checked, "verified_pairs": verified,
        "oversized_buckets": neighbours.oversized,
    }
    return Clusters(labels, stats)


def joined(labels: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Component labels (each the smallest row of its component) after adding `edges`:
    the components the edges touch are merged, the others keep their labels."""
    if not len(edges):
        return labels
    touched, ends = np.unique(labels[edges], return_inverse=True)
    ends = ends.reshape(-1, 2)
    merged = components(ends, len(touched))  # over the touched components only
    remap = np.arange(len(labels))
    remap[touched] = touched[merged]
    return remap[labels]


def components(edges: np.ndarray, n: int) -> np.ndarray:
    """Connected components of an undirected graph, each labelled by its smallest node."""
    if n == 0:
        return np.empty(0, dtype=np.int64)
    graph = coo_matrix((np.ones(len(edges), dtype=np.int8), (edges[:, 0], edges[:, 1])),
                       shape=(n, n))
    _, component = connected_components(graph, directed=False)
    smallest = np.full(component.max() + 1, n, dtype=np.int64)
    np.minimum.at(smallest, component, np.arange(n))
    return smallest[component]


def representatives(members: pa.Table, source_priority: tuple[str, ...]) -> np.ndarray:
    """For rows of multi-row clusters (columns row, label, id, source, has_response), the
    row of each one's representative: an item with a response first, then the earlier
    source in `source_priority`, then the source name, then the smallest id. Sorted in
    arrow: millions of members are never Python objects."""
    if not members.num_rows:
        return np.empty(0, dtype=np.int64)
    sources = pc.dictionary_encode(members["source"]).combine_chunks()
    rank = {source: i for i, source in enumerate(source_priority)}
    priority = np.array([rank.get(s, len(rank)) for s in sources.dictionary.to_pylist()],
                        dtype=np.int64)[sources.indices.to_numpy(zero_copy_only=False)]
    label = members["label"].to_numpy()
    order = pc.sort_indices(pa.table({
        "label": label, "no_response": pc.invert(members["has_response"]),
        "priority": priority, "source": members["source"], "id": members["id"],
    }), sort_keys=[(key, "ascending") for key in (
        "label", "no_response", "priority", "source", "id")]).to_numpy()  # a stable sort
    ordered = label[order]
    first = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    best = members["row"].to_numpy()[order[first]]
    return best[np.searchsorted(ordered[first], label)]
