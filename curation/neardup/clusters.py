"""Near-duplicate clusters: exact groups, then LSH candidates checked by true Jaccard,
joined into connected components (scipy)."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from curation.neardup.lsh import candidate_pairs
from curation.neardup.minhash import SHINGLE_KINDS, MinHashParams, Sketches, band_keys


@dataclass
class Clusters:
    labels: np.ndarray      # cluster label per row: the smallest row index in its cluster
    stats: dict[str, Any]   # shingle kinds, LSH figures, candidate and verified pairs


def cluster(sketches: Sketches, params: MinHashParams, max_bucket: int) -> Clusters:
    """Rows are joined when their text keys are equal, or when LSH makes them candidates
    and their true Jaccard similarity is at least `params.threshold`."""
    n = len(sketches)
    _, first, inverse = np.unique(sketches.exact, return_index=True, return_inverse=True)
    exact_parent = first[inverse.ravel()]

    heads = np.zeros(n, dtype=bool)
    heads[first] = True
    keep = heads[sketches.sketched]
    pairs, oversized = candidate_pairs(band_keys(sketches.signatures[keep], params.bands),
                                       sketches.sketched[keep], max_bucket)
    verified = pairs[sketches.jaccards(pairs) >= params.threshold]
    kinds = Counter(SHINGLE_KINDS[k] for k in sketches.kinds.tolist())
    stats = {
        "shingle_kinds": {kind: kinds[kind] for kind in SHINGLE_KINDS},
        "lsh_bands": params.bands[0], "lsh_rows_per_band": params.bands[1],
        "candidate_pairs": len(pairs), "verified_pairs": len(verified),
        "oversized_buckets": int(oversized),
    }
    edges = np.concatenate([np.column_stack([np.arange(n), exact_parent]), verified])
    return Clusters(components(edges, n), stats)


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


def representatives(members: pd.DataFrame, source_priority: tuple[str, ...]) -> pd.Series:
    """For rows of multi-row clusters (columns row, label, id, source, has_response), the
    row of each one's representative: an item with a response first, then the earlier
    source in `source_priority`, then the source name, then the smallest id."""
    rank = {source: i for i, source in enumerate(source_priority)}
    order = members.assign(
        no_response=~members["has_response"],
        priority=[rank.get(s, len(rank)) for s in members["source"]],
    ).sort_values(["label", "no_response", "priority", "source", "id"], kind="stable")
    best = order.groupby("label", sort=False)["row"].first()
    return pd.Series(best.loc[members["label"]].to_numpy(), index=members.index)
