"""Stage `dedup`: exact and near-duplicate clusters; one representative of each is kept.

Steps: sketch (text keys, shingles, MinHash signatures, in worker processes) -> exact
groups (same text key) -> LSH candidates among one member per exact group, checked by
true Jaccard nearest bucket neighbours first (a pair already in one cluster is skipped)
-> connected components -> representative per cluster.

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

from curation.core.config import DedupParams
from curation.core.engine import Engine
from curation.core.errors import CurationError
from curation.core.items import (
    from_arrow,
    response_type,
    typed,
    user_texts,
    with_first_response,
)
from curation.core.ledger import StageLedger
from curation.core.paths import Paths
from curation.core.progress import bar
from curation.core.schemas import load_schema, validate_rows
from curation.core.tableio import (
    ROWS_PER_GROUP,
    RowCursor,
    SpillFile,
    StagedWrites,
    open_input,
    parquet_file,
)
from curation.neardup.clusters import Clusters, cluster, representatives
from curation.neardup.minhash import (
    MinHashParams,
    Sketches,
    check_bands,
    search_index,
    sketch_tables,
)
from curation.neardup.store import sketch_writer, to_table
from curation.stages.base import Context, StageResult

STAGE = "dedup"
# Rows per batch when streaming the table after the search: a batch of dropped rows is held
# as Python objects for the ledger (about 2 KB a row), and each batch is validated (about
# 25 ms a call, so not a worker task's `batch_size` at a time).
_STREAM_ROWS = 25_000
CLUSTER_COLUMNS = ["cluster_id", "id", "representative", "is_representative", "match",
                   "similarity", "source"]


def text_batches(path: Path, include_response: bool, batch_size: int) -> Iterator[pa.Array]:
    """The texts duplicates are judged on, streamed from the table a batch at a time: the
    user turns of the conversation (the prompt, single-turn), and with `include_response`
    the first response too."""
    columns = ["messages", "responses"] if include_response else ["messages"]
    for batch in parquet_file(path).iter_batches(batch_size=batch_size, columns=columns):
        texts = user_texts(batch.column(0))
        yield with_first_response(texts, batch.column(1)) if include_response else texts


def sketch_table(path: Path, params: DedupParams, include_response: bool, desc: str,
                 engine: Engine) -> Iterator[pa.Table]:
    """Sketches of every row's text (the prompt, or prompt and response), on the engine,
    as `to_arrow` tables in row order."""
    total = parquet_file(path).metadata.num_rows
    with bar(total, desc) as shown:
        yield from sketch_tables(text_batches(path, include_response, params.batch_size),
                                 MinHashParams.of(params), engine, shown)


def spilled(tables: Iterable[pa.Table], spill: SpillFile) -> Iterator[pa.Table]:
    """`tables`, each written to `spill` as it passes."""
    for table in tables:
        spill.write(table)
        yield table


def member_rows(path: Path, rows: np.ndarray, batch_size: int) -> pa.Table:
    """row, id, source and whether there is a response, for the given (sorted) rows."""
    parts = []
    start = 0
    for batch in parquet_file(path).iter_batches(batch_size=batch_size,
                                                    columns=["id", "source", "responses"]):
        lo, hi = np.searchsorted(rows, [start, start + batch.num_rows])
        if hi > lo:
            picked = pa.Table.from_batches([batch]).take(rows[lo:hi] - start)
            parts.append(pa.table({
                "row": rows[lo:hi], "id": picked["id"].cast(pa.string()),
                "source": picked["source"].cast(pa.string()),
                "has_response": pc.greater(pc.list_value_length(picked["responses"]).fill_null(0),
                                           0)}))
        start += batch.num_rows
    return pa.concat_tables(parts) if parts else pa.table(
        {"row": pa.array([], pa.int64()), "id": pa.array([], pa.string()),
         "source": pa.array([], pa.string()), "has_response": pa.array([], pa.bool_())})


@dataclass
class _Members:
    """The rows of multi-row clusters (`rows`, ascending) and, position for position, what
    the ledger and the clusters table say of each: arrays, not Python objects."""

    rows: np.ndarray
    representative: np.ndarray  # row of the cluster's representative
    cluster_id: pa.Array        # id of the cluster's representative
    exact: np.ndarray
    similarity: np.ndarray
    has_response: np.ndarray

    def at(self, rows: np.ndarray) -> np.ndarray:
        """Positions of these member rows."""
        return np.searchsorted(self.rows, rows)


def run(context: Context) -> StageResult:
    """Cluster the normalized table and write the kept rows, the clusters, the saved
    sketches of the kept prompts (for split) and the reports.

    No text is held in memory: the input is streamed for the search, once for the
    cluster members' ids and sources, and once to write the output. Nor are signatures,
    past `sketch_memory_mb`: the search holds their band keys, and the prompts' sketches
    wait in a temporary file until the kept ones are written.
    """
    params, paths = context.params.dedup, context.paths
    check_bands(MinHashParams.of(params), context.params_file.error, "dedup.threshold")
    input_path = paths.normalized
    n = open_input(input_path, "normalize", load_schema("normalized").columns).metadata.num_rows
    engine = Engine(context.params.engine.kind, context.params.engine.address, params.num_proc)
    with SpillFile("dedup-sketches", params.sketch_memory_mb * 2**20, rows=n) as prompts:
        searched = sketch_table(input_path, params, params.include_response, "dedup sketch",
                                engine)
        sketches, keys = search_index(
            searched if params.include_response else spilled(searched, prompts),
            MinHashParams.of(params), n)
        found = cluster(sketches, MinHashParams.of(params), params.max_bucket_size,
                        params.num_proc, keys)
        del keys
        if params.include_response:
            for table in sketch_table(input_path, params, False, "sketch prompts", engine):
                prompts.write(table)
        return _finish(context, sketches, found, prompts, n)


def _finish(context: Context, sketches: Sketches, found: Clusters, prompts: SpillFile,
            n: int) -> StageResult:
    """Representatives, similarities and the outputs, from the clusters found."""
    params, paths, input_path = context.params.dedup, context.paths, context.paths.normalized
    sizes = np.bincount(found.labels, minlength=n)[found.labels]
    in_cluster = np.flatnonzero(sizes > 1)
    table = member_rows(input_path, in_cluster, _STREAM_ROWS)
    table = table.append_column("label", pa.array(found.labels[in_cluster]))
    rep = np.arange(n)
    rep[in_cluster] = representatives(table, params.source_priority)
    members = _members(table, rep[in_cluster], sketches)

    ledger = StageLedger(STAGE)
    with StagedWrites() as out:
        clusters = _clusters_table(table, members)
        report = dedup_report(n, clusters, found.stats, params)
        out.parquet(clusters, paths.dup_clusters)
        del table, clusters
        counts: Counter[str] = Counter()
        rows_in, kept = _write_kept(
            input_path, rep, sizes, members, ledger, out, paths,
            RowCursor(prompts.batches(_STREAM_ROWS)), context.vocabulary.arrow_type(),
            counts, _STREAM_ROWS)
        ledger.count_responses(counts["in"], counts["kept"], counts["moved"],
                               identical_response=counts["identical_response"],
                               item_quarantined=counts["item_quarantined"])
        summary = ledger.summary(rows_in, kept)
        report["unmatched_source_priority"] = [s for s in params.source_priority
                                               if s not in rows_in]
        ledger.write(out, paths, summary, {k: report[k] for k in (
            "exact_duplicates", "near_duplicates", "clusters", "largest_cluster")})
        out.csv(["size", "clusters"], [[int(k), v] for k, v in report["clusters_by_size"].items()],
                paths.plot("dup_cluster_sizes"))
        out.json(report, paths.report("dedup"))
    unmatched = report["unmatched_source_priority"]
    return StageResult(STAGE, summary, report, [
        f"clusters: {report['clusters']} (largest {report['largest_cluster']}), "
        f"{report['exact_duplicates']} exact and {report['near_duplicates']} near duplicates "
        "dropped", *([f"warning: dedup.source_priority names no source of this build: "
                      f"{', '.join(unmatched)} (a misspelling?)"] if unmatched else [])])


def _members(table: pa.Table, representative: np.ndarray, sketches: Sketches) -> _Members:
    """Each member's cluster id, and its similarity to the representative (1 for an exact
    duplicate: the same text key)."""
    rows = table["row"].to_numpy()
    exact = sketches.exact[rows] == sketches.exact[representative]
    similarity = np.ones(len(rows))
    near = np.flatnonzero(~exact)
    similarity[near] = sketches.jaccards(np.column_stack([rows[near], representative[near]]))
    cluster_id = table["id"].combine_chunks().take(np.searchsorted(rows, representative))
    return _Members(rows, representative, cluster_id, exact, similarity,
                    table["has_response"].to_numpy())


def _clusters_table(table: pa.Table, members: _Members) -> pa.Table:
    """`dup_clusters`: one row per member, clusters by id, each representative first."""
    is_rep = members.rows == members.representative
    match = np.where(is_rep, 0, np.where(members.exact, 1, 2))
    unsorted = pa.table({
        "cluster_id": members.cluster_id, "id": table["id"], "is_representative": is_rep,
        "match": pa.array(["representative", "exact", "near"]).take(pa.array(match)),
        "similarity": members.similarity.round(6), "source": table["source"]})
    ordered = unsorted.take(pc.sort_indices(unsorted, sort_keys=[
        ("cluster_id", "ascending"), ("is_representative", "descending"),
        ("id", "ascending")]))
    # the representative's id, twice: as the cluster's id and as the representative
    columns = {name: ordered[name] for name in ordered.column_names}
    return pa.table({name: columns[name if name != "representative" else "cluster_id"]
                     for name in CLUSTER_COLUMNS})


def _write_kept(input_path: Path, rep: np.ndarray, sizes: np.ndarray, members: _Members,
                ledger: StageLedger, out: StagedWrites, paths: Paths, prompts: RowCursor,
                judgments: pa.StructType, counts: Counter[str], batch_size: int
                ) -> tuple[Counter[str], Counter[str]]:
    """Stream the input: representatives and singletons, validated, go to the deduped
    table, each representative with the responses of its cluster's other members (an
    identical one once), and its prompt's sketch (read in step from `prompts`) to the
    signatures; those members go to the ledger as duplicates. Returns the rows in and the
    rows kept, per source.

    Rows stay arrow tables: only the representatives that gain responses are turned into
    Python objects, and pandas sees a batch only to validate it and to record drops.
    """
    schema = load_schema("deduped")
    joining = _joining(input_path, members, rep, batch_size)
    joining_rows = np.unique(joining.rows)
    response_list = pa.list_(response_type(judgments))
    writer = None
    signatures = sketch_writer(out, paths.signatures)
    rows_in: Counter[str] = Counter()
    kept: Counter[str] = Counter()
    start = 0
    source = parquet_file(input_path)
    with bar(source.metadata.num_rows, "dedup write") as shown:
        for batch in source.iter_batches(batch_size=batch_size):
            table = typed(pa.Table.from_batches([batch]), judgments)
            rows = np.arange(start, start + batch.num_rows)
            start += batch.num_rows
            sketched = prompts.take(batch.num_rows)
            rows_in.update(table["source"].to_pylist())
            counts["in"] += _responses_in(table)
            is_rep = rep[rows] == rows
            gone = rows[~is_rep]
            if len(gone):
                at = members.at(gone)
                ledger.drop(from_arrow(table.filter(~is_rep)), "duplicate",
                            pd.Series(np.where(members.exact[at], "exact_duplicate",
                                               "near_duplicate")),
                            duplicate_of=pd.Series(members.cluster_id.take(pa.array(at))
                                                   .to_pylist()),
                            detail=pd.Series([f"jaccard {s:.3f}"
                                              for s in members.similarity[at].tolist()]))
            rows = rows[is_rep]
            table = _rows(table, is_rep)
            joins = np.flatnonzero(np.isin(rows, joining_rows))
            if len(joins):
                merged = [_union(own, joining.of(int(rows[j])), counts) for own, j in zip(
                    table["responses"].take(joins).to_pylist(), joins.tolist(), strict=True)]
                table = table.set_column(table.column_names.index("responses"), "responses",
                                         _spliced(table["responses"], joins,
                                                  pa.array(merged, response_list)))
            table = table.append_column("dup_cluster_id", table["id"]).append_column(
                "dup_cluster_size", pa.array(sizes[rows], pa.int64()))
            _, failures = validate_rows(table.to_pandas(), schema)  # arrow's own objects: faster
            passed = np.ones(table.num_rows, dtype=bool)
            passed[failures["index"].to_numpy(dtype=int)] = False
            if not failures.empty:
                quarantined = table.filter(~passed)
                ledger.drop(from_arrow(quarantined), "quarantined", failures["check"],
                            field=failures["field"], detail=failures["detail"])
                counts["item_quarantined"] += _responses_in(quarantined)
            table = _rows(table, passed)
            counts["kept"] += _responses_in(table)
            written = is_rep.copy()
            written[is_rep] = passed
            signatures.write(to_table(table["id"].combine_chunks(), _rows(sketched, written)))
            if writer is None:
                writer = out.row_groups(paths.deduped, table.schema, ROWS_PER_GROUP)
            writer.write(table)
            kept.update(table["source"].to_pylist())
            shown.update(batch.num_rows)
    if writer is None:
        raise CurationError("the normalized table is empty", file=str(input_path))
    writer.close()
    signatures.close()
    return rows_in, kept


def _rows(table: pa.Table, mask: np.ndarray) -> pa.Table:
    """The rows of `table` where `mask` holds (the table itself when it holds for all:
    a filter copies every column, nested texts and responses included)."""
    return table if mask.all() else table.filter(mask)


def _responses_in(table: pa.Table) -> int:
    return int(pc.sum(pc.list_value_length(table["responses"])).as_py() or 0)


def _spliced(column: pa.ChunkedArray, at: np.ndarray, values: pa.Array) -> pa.Array:
    """`column` with its values at positions `at` replaced by `values`, in order."""
    picks = np.arange(len(column))
    picks[at] = len(column) + np.arange(len(at))
    return pa.concat_arrays([*column.chunks, values]).take(pa.array(picks))


@dataclass
class _Joining:
    """The responses of cluster members that move to their representative, left in the
    arrow batches they were read in (Python objects only for a batch's representatives as
    they are written; one array of them all could pass arrow's 2 GB string limit).
    `rows`: the representative's row of each response, ascending; `chunks` and `at`: where
    the response is, member by member in row order within a representative."""

    rows: np.ndarray
    chunks: np.ndarray
    at: np.ndarray
    parts: list[pa.Array]

    def of(self, row: int) -> list[dict[str, Any]]:
        lo, hi = np.searchsorted(self.rows, [row, row + 1])
        return [self.parts[chunk][index].as_py() for chunk, index in zip(
            self.chunks[lo:hi].tolist(), self.at[lo:hi].tolist(), strict=True)]


def _joining(path: Path, members: _Members, rep: np.ndarray, batch_size: int) -> _Joining:
    """The responses joining representatives, read from the table for just the members
    that have some."""
    moving = members.rows[members.has_response & (members.representative != members.rows)]
    owners: list[np.ndarray] = []
    parts: list[pa.Array] = []
    start = 0
    for batch in parquet_file(path).iter_batches(batch_size=batch_size,
                                                    columns=["responses"]):
        lo, hi = np.searchsorted(moving, [start, start + batch.num_rows])
        if hi > lo:
            picked = batch.column(0).take(pa.array(moving[lo:hi] - start))
            lengths = pc.list_value_length(picked).fill_null(0).to_numpy(zero_copy_only=False)
            owners.append(np.repeat(rep[moving[lo:hi]], lengths))
            parts.append(pc.list_flatten(picked))
        start += batch.num_rows
    sizes = np.array([len(part) for part in parts], dtype=np.int64)
    rows = np.concatenate(owners) if owners else np.empty(0, dtype=np.int64)
    chunks = np.repeat(np.arange(len(parts)), sizes)
    at = np.arange(len(rows)) - np.repeat(np.cumsum(sizes) - sizes, sizes)
    order = np.argsort(rows, kind="stable")
    return _Joining(rows[order], chunks[order], at[order], parts)


def _union(own: list[dict[str, Any]], joining: list[dict[str, Any]],
           counts: Counter[str]) -> list[dict[str, Any]]:
    """An item's responses and those joining it from duplicates; an identical response
    (same text and model) is kept once."""
    union = list(own)
    seen = {(r["text"], r["model"]) for r in own}
    for response in joining:
        key = (response["text"], response["model"])
        if key in seen:
            counts["identical_response"] += 1
        else:
            seen.add(key)
            union.append(response)
            counts["moved"] += 1
    return union


def dedup_report(rows_in: int, clusters: pa.Table, stats: dict[str, Any],
                 params: DedupParams) -> dict:
    """The figures of `reports/dedup.json`, from the clusters table (sorted by cluster)."""
    cluster_ids = clusters["cluster_id"].combine_chunks()
    starts = np.flatnonzero(np.r_[True, pc.not_equal(cluster_ids[1:],
                                                      cluster_ids[:-1]).to_numpy(zero_copy_only=False)]
                            ) if len(cluster_ids) else np.empty(0, dtype=np.int64)
    sizes = np.diff(np.r_[starts, len(cluster_ids)])
    cluster = np.repeat(np.arange(len(sizes)), sizes)
    sources = pc.dictionary_encode(clusters["source"]).combine_chunks()
    names = sources.dictionary.to_pylist()
    pairs = np.unique(cluster * len(names) + sources.indices.to_numpy(zero_copy_only=False))
    per_cluster = np.split(pairs % max(len(names), 1),
                           np.flatnonzero(np.diff(pairs // max(len(names), 1))) + 1)
    shared = Counter(" + ".join(sorted(names[k] for k in codes.tolist()))
                     for codes in per_cluster if len(codes) > 1)
    dropped = pc.invert(clusters["is_representative"])
    match = pc.value_counts(clusters["match"].filter(dropped)).to_pylist()
    by_match = {m["values"]: m["counts"] for m in match}
    by_source = {m["values"]: m["counts"] for m in
                 pc.value_counts(clusters["source"].filter(dropped)).to_pylist()}
    by_size = Counter(sizes.tolist())
    return {
        "rows_in": rows_in,
        "kept": rows_in - sum(by_match.values()),
        "exact_duplicates": by_match.get("exact", 0),
        "near_duplicates": by_match.get("near", 0),
        "clusters": len(sizes),
        "clusters_by_size": {str(k): by_size[k] for k in sorted(by_size)},
        "largest_cluster": int(sizes.max()) if len(sizes) else 0,
        "clusters_shared_by_sources": dict(sorted(shared.items())),
        "duplicates_by_source": {str(k): by_source[k] for k in sorted(by_source)},
        **stats,
        "params": {"on": "prompt+response" if params.include_response else "prompt",
                   "ngram": params.ngram, "char_ngram": params.char_ngram,
                   "num_perm": params.num_perm, "threshold": params.threshold,
                   "seed": params.seed, "false_negative_weight": params.false_negative_weight},
    }
