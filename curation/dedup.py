"""Stage `dedup`: exact and near-duplicate clusters; one representative of each is kept.

Steps: sketch (text keys, shingles, MinHash band keys, in worker processes) -> exact
groups (same text key) -> LSH candidate pairs among one member per exact group -> true
Jaccard check of each candidate -> union-find clusters -> representative per cluster.

Representative rule, in order: a row with a response first; then the source listed
earliest in `source_priority` (unlisted sources after, by name); then the smallest id.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from curation.errors import CurationError
from curation.ledger import StageLedger, dropped_path, report_path
from curation.minhash import (
    SHINGLE_KINDS,
    MinHashParams,
    candidate_pairs,
    jaccard,
    sketch_all,
)
from curation.schemas import load_schema, validate_rows
from curation.tableio import StagedWrites

STAGE = "dedup"
_STREAM_ROWS = 100_000  # rows per batch when streaming the output
CLUSTER_COLUMNS = ["cluster_id", "id", "representative", "is_representative", "match",
                   "similarity", "source"]


@dataclass(frozen=True)
class DedupParams:
    minhash: MinHashParams
    include_response: bool   # judge duplicates on prompt + response, not the prompt alone
    num_proc: int
    batch_size: int
    max_bucket_size: int
    source_priority: tuple[str, ...]

    @classmethod
    def from_dict(cls, params: dict) -> DedupParams:
        try:
            minhash = MinHashParams(int(params["ngram"]), int(params["char_ngram"]),
                                    int(params["num_perm"]), float(params["threshold"]),
                                    int(params["seed"]), float(params["false_negative_weight"]))
            built = cls(minhash, bool(params["include_response"]), max(1, int(params["num_proc"])),
                        max(1, int(params["batch_size"])), max(1, int(params["max_bucket_size"])),
                        tuple(params.get("source_priority") or ()))
        except (KeyError, TypeError, ValueError) as exc:
            raise CurationError(f"bad or missing dedup parameter: {exc}", file="params.yaml",
                                field="dedup") from None
        for name in ("threshold", "false_negative_weight"):
            if not 0.0 < getattr(minhash, name) <= 1.0:
                raise CurationError(f"{name} must be in (0, 1]", file="params.yaml",
                                    field=f"dedup.{name}")
        if minhash.ngram < 1 or minhash.char_ngram < 1 or minhash.num_perm < 2:
            raise CurationError("ngram and char_ngram must be >= 1, num_perm >= 2",
                                file="params.yaml", field="dedup")
        return built


@dataclass
class Clusters:
    """The outcome of the search: a cluster label per row, and what similarity rests on."""

    labels: np.ndarray          # cluster label per row: the smallest row index in the cluster
    exact: np.ndarray           # text-key hash per row: equal keys are exact duplicates
    shingles: np.ndarray        # sorted shingle hashes of every row, concatenated
    offsets: np.ndarray         # row i's shingles are shingles[offsets[i]:offsets[i + 1]]
    stats: dict[str, Any]

    def similarity(self, i: int, j: int) -> float:
        """1.0 for exact duplicates, else the true Jaccard similarity of the shingle sets."""
        if self.exact[i] == self.exact[j]:
            return 1.0
        return jaccard(self.shingles, self.offsets, i, j)


def text_batches(path: Path, include_response: bool, batch_size: int) -> Iterator[list[str]]:
    """The texts duplicates are judged on, streamed from the table a batch at a time."""
    columns = ["prompt", "response"] if include_response else ["prompt"]
    for batch in pq.ParquetFile(path).iter_batches(batch_size=batch_size, columns=columns):
        prompts = batch.column(0).to_pylist()
        if include_response:
            responses = batch.column(1).to_pylist()
            prompts = [p if r is None else f"{p}\n{r}"
                       for p, r in zip(prompts, responses, strict=True)]
        yield prompts


def member_rows(path: Path, rows: np.ndarray) -> pd.DataFrame:
    """id, source and whether a response exists, for the given (sorted) row positions."""
    parts = []
    start = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=_STREAM_ROWS,
                                                    columns=["id", "source", "response"]):
        lo, hi = np.searchsorted(rows, [start, start + batch.num_rows])
        if hi > lo:
            picked = pa.Table.from_batches([batch]).take(rows[lo:hi] - start)
            parts.append(pd.DataFrame({
                "row": rows[lo:hi], "id": picked["id"].to_pylist(),
                "source": picked["source"].to_pylist(),
                "has_response": pc.is_valid(picked["response"]).to_numpy(zero_copy_only=False),
            }))
        start += batch.num_rows
    columns = {"row": "int64", "id": "str", "source": "str", "has_response": "bool"}
    return (pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(
        {c: pd.Series(dtype=t) for c, t in columns.items()}))


def find_clusters(batches: Iterable[list[str]], total: int, params: DedupParams) -> Clusters:
    """Exact groups, then LSH candidates checked by true Jaccard, joined by union-find."""
    with tqdm(total=total, desc="dedup sketch", unit=" rows", disable=None) as bar:
        sketch = sketch_all(batches, params.minhash, params.num_proc, bar)
    n = len(sketch.exact)
    offsets = np.concatenate([[0], np.cumsum(sketch.lengths)])

    # Exact: every row points at the first row with the same text key.
    _, first, inverse = np.unique(sketch.exact, return_index=True, return_inverse=True)
    parent = first[inverse.ravel()]

    # Near: LSH among exact-group heads that have shingles, each candidate checked.
    heads = np.zeros(n, dtype=bool)
    heads[first] = True
    keep = heads[sketch.sketched]
    pairs, oversized = candidate_pairs(sketch.band_keys[keep], sketch.sketched[keep],
                                       params.max_bucket_size)
    threshold = params.minhash.threshold
    verified = [(i, j) for i, j in pairs.tolist()
                if jaccard(sketch.shingles, offsets, i, j) >= threshold]
    for i, j in verified:
        _union(parent, i, j)
    while not np.array_equal(parent, parent[parent]):  # point every row at its root
        parent = parent[parent]
    kinds = Counter(SHINGLE_KINDS[k] for k in sketch.kinds.tolist())
    stats = {
        "shingle_kinds": {kind: kinds[kind] for kind in SHINGLE_KINDS},
        "lsh_bands": params.minhash.bands[0], "lsh_rows_per_band": params.minhash.bands[1],
        "candidate_pairs": len(pairs), "verified_pairs": len(verified),
        "oversized_buckets": int(oversized),
    }
    return Clusters(parent, sketch.exact, sketch.shingles, offsets, stats)


def _find(parent: np.ndarray, i: int) -> int:
    root = i
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:
        parent[i], i = root, parent[i]
    return int(root)


def _union(parent: np.ndarray, i: int, j: int) -> None:
    a, b = _find(parent, i), _find(parent, j)
    if a != b:
        parent[max(a, b)] = min(a, b)


def representatives(members: pd.DataFrame, source_priority: tuple[str, ...]) -> pd.Series:
    """For rows of multi-row clusters (columns row, label, id, source, has_response), the
    row of each one's representative, by the module's rule."""
    rank = {source: i for i, source in enumerate(source_priority)}
    order = members.assign(
        no_response=~members["has_response"],
        priority=[rank.get(s, len(rank)) for s in members["source"]],
    ).sort_values(["label", "no_response", "priority", "source", "id"], kind="stable")
    best = order.groupby("label", sort=False)["row"].first()
    return pd.Series(best.loc[members["label"]].to_numpy(), index=members.index)


def dedup(input_path: Path, params: DedupParams, root: Path = Path(".")) -> dict:
    """Run the stage over the normalized table and write its outputs under `root`.

    No text is held in memory: the input is streamed once for the search, once for the
    cluster members' ids and sources, and once to write the output.
    """
    n = pq.ParquetFile(input_path).metadata.num_rows
    found = find_clusters(text_batches(input_path, params.include_response, params.batch_size),
                          n, params)
    sizes = np.bincount(found.labels, minlength=n)[found.labels]
    in_cluster = np.flatnonzero(sizes > 1)
    members = member_rows(input_path, in_cluster).assign(label=found.labels[in_cluster])
    rep = np.arange(n)
    rep[in_cluster] = representatives(members, params.source_priority).to_numpy()
    members["representative_row"] = rep[in_cluster]
    members["is_representative"] = members["row"] == members["representative_row"]
    members["cluster_id"] = members.set_index("row")["id"].loc[rep[in_cluster]].to_numpy()
    members["exact"] = found.exact[in_cluster] == found.exact[rep[in_cluster]]
    members["similarity"] = [found.similarity(i, r) for i, r in
                             zip(in_cluster.tolist(), rep[in_cluster].tolist(), strict=True)]
    members["match"] = np.where(members["is_representative"], "representative",
                                np.where(members["exact"], "exact", "near"))

    ledger = StageLedger(STAGE)
    clusters = members.sort_values(["cluster_id", "is_representative", "id"],
                                   ascending=[True, False, True], kind="stable")
    clusters = clusters.assign(representative=clusters["cluster_id"],
                               similarity=clusters["similarity"].round(6))
    with StagedWrites() as out:
        rows_in, kept = _write_kept(input_path, rep, sizes, members.set_index("row"), ledger,
                                    out, root / "data" / "deduped.parquet")
        summary = ledger.summary(rows_in, kept)
        report = dedup_report(n, clusters, found.stats, params)
        out.parquet(clusters[CLUSTER_COLUMNS].reset_index(drop=True),
                    root / "data" / "dup_clusters.parquet")
        out.parquet(ledger.dropped(), dropped_path(STAGE, root))
        out.json(summary, report_path(STAGE, root))
        out.json(report, root / "reports" / "dedup.json")
    return report


def _write_kept(input_path: Path, rep: np.ndarray, sizes: np.ndarray, members: pd.DataFrame,
                ledger: StageLedger, out: StagedWrites,
                target: Path) -> tuple[Counter[str], Counter[str]]:
    """Stream the input: representatives and singletons, validated, go to `target`;
    the other members of each cluster go to the ledger as duplicates. Returns the rows
    in and the rows kept, per source."""
    schema = load_schema("deduped")
    writer = None
    rows_in: Counter[str] = Counter()
    kept: Counter[str] = Counter()
    start = 0
    for batch in pq.ParquetFile(input_path).iter_batches(batch_size=_STREAM_ROWS):
        rows = np.arange(start, start + batch.num_rows)
        start += batch.num_rows
        frame = batch.to_pandas()
        rows_in.update(frame["source"].tolist())
        is_rep = rep[rows] == rows
        gone = rows[~is_rep]
        if len(gone):
            info = members.loc[gone]
            ledger.drop(frame[~is_rep], "duplicate",
                        pd.Series(np.where(info["exact"], "exact_duplicate", "near_duplicate")),
                        duplicate_of=pd.Series(info["cluster_id"].to_numpy()),
                        detail=pd.Series([f"jaccard {s:.3f}" for s in info["similarity"]]))
        frame = frame[is_rep].assign(dup_cluster_id=lambda f: f["id"],
                                     dup_cluster_size=sizes[rows[is_rep]].astype(np.int64))
        valid, failures = validate_rows(frame, schema)
        if not failures.empty:
            ledger.drop(frame.iloc[failures["index"]], "quarantined", failures["check"],
                        field=failures["field"], detail=failures["detail"])
        arrow = pa.Table.from_pandas(valid, preserve_index=False).replace_schema_metadata(None)
        if writer is None:
            writer = out.parquet_writer(target, arrow.schema)
        writer.write_table(arrow.cast(writer.schema))
        kept.update(valid["source"].tolist())
    if writer is None:
        raise CurationError("the normalized table is empty", file=str(input_path))
    return rows_in, kept


def dedup_report(rows_in: int, clusters: pd.DataFrame, stats: dict[str, Any],
                 params: DedupParams) -> dict:
    """The figures of `reports/dedup.json`."""
    sizes = clusters.groupby("cluster_id").size()
    shared: Counter[str] = Counter()
    for sources in clusters.groupby("cluster_id")["source"].agg(lambda s: sorted(set(s))):
        if len(sources) > 1:
            shared[" + ".join(sources)] += 1
    dropped = clusters[~clusters["is_representative"]]
    return {
        "rows_in": rows_in,
        "kept": rows_in - len(dropped),
        "exact_duplicates": int((dropped["match"] == "exact").sum()),
        "near_duplicates": int((dropped["match"] == "near").sum()),
        "clusters": int(len(sizes)),
        "clusters_by_size": {str(k): int(v) for k, v in sizes.value_counts().sort_index().items()},
        "largest_cluster": int(sizes.max()) if len(sizes) else 0,
        "clusters_shared_by_sources": dict(sorted(shared.items())),
        "duplicates_by_source": {str(k): int(v) for k, v in
                                 dropped["source"].value_counts().sort_index().items()},
        **stats,
        "params": {"on": "prompt+response" if params.include_response else "prompt",
                   "ngram": params.minhash.ngram, "char_ngram": params.minhash.char_ngram,
                   "num_perm": params.minhash.num_perm, "threshold": params.minhash.threshold,
                   "seed": params.minhash.seed,
                   "false_negative_weight": params.minhash.false_negative_weight},
    }
