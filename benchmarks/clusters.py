"""Connected components for duplicate clusters: scipy's csgraph against the union-find the
dedup stage used before (same labels), on random graphs shaped like dedup's.

Dedup joins every row to its exact-duplicate head and adds the verified near pairs; this
builds such a graph with `--n` rows, `--exact` share of exact copies and `--near` pairs.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from curation.neardup.clusters import components


def union_find(parent: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """The former implementation: path-halving union-find over the pairs, in Python."""
    parent = parent.copy()

    def find(i: int) -> int:
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return int(root)

    for i, j in pairs.tolist():
        a, b = find(i), find(j)
        if a != b:
            parent[max(a, b)] = min(a, b)
    while not np.array_equal(parent, parent[parent]):
        parent = parent[parent]
    return parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000, help="rows")
    parser.add_argument("--exact", type=float, default=0.1, help="share of exact copies")
    parser.add_argument("--near", type=int, default=50_000, help="verified near pairs")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    head = np.arange(args.n)
    copies = rng.choice(args.n, int(args.n * args.exact), replace=False)
    head[copies] = rng.integers(0, args.n, len(copies))
    head = np.minimum(head, np.arange(args.n))  # a copy points at an earlier row
    while not np.array_equal(head, head[head]):
        head = head[head]
    pairs = np.sort(rng.integers(0, args.n, (args.near, 2)), axis=1)
    pairs = pairs[pairs[:, 0] != pairs[:, 1]]

    start = time.perf_counter()
    ours = components(np.concatenate([np.column_stack([np.arange(args.n), head]), pairs]),
                      args.n)
    scipy_s = time.perf_counter() - start
    start = time.perf_counter()
    theirs = union_find(head, pairs)
    union_s = time.perf_counter() - start
    assert np.array_equal(ours, theirs), "the two disagree"
    print(f"{args.n:,} rows, {len(copies):,} exact copies, {len(pairs):,} near pairs: "
          f"scipy connected_components {scipy_s:.3f} s, union-find {union_s:.3f} s "
          f"({union_s / scipy_s:.1f}x); same labels")


if __name__ == "__main__":
    main()
