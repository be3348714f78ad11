"""Sketches and embeddings on disk (`data/signatures.parquet`, `data/embeddings.parquet`):
one row per item, keyed by id, so later stages search at other thresholds without
re-reading, re-hashing or re-embedding any text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from curation.core.errors import CurationError, first_line
from curation.core.tableio import RowGroups, StagedWrites, read_arrow
from curation.neardup.minhash import Sketches

SCHEMA = pa.schema([("id", pa.string()), ("exact", pa.uint64()), ("kind", pa.int8()),
                    ("signature", pa.list_(pa.uint32())),
                    ("shingles", pa.large_list(pa.uint32()))])
_ROWS_PER_GROUP = 100_000


def sketch_writer(out: StagedWrites, path: Path) -> RowGroups:
    """A staged writer of `data/signatures.parquet`, in row groups of `_ROWS_PER_GROUP`.

    Uncompressed and without dictionaries: hashes repeat too rarely for either to pay,
    and the dictionary alone made writing 3.5x slower.
    """
    return out.row_groups(path, SCHEMA, _ROWS_PER_GROUP, compression="none",
                          use_dictionary=False)


def to_table(ids: list[str] | pa.Array, sketches: Sketches | pa.Table) -> pa.Table:
    """id, exact key, shingle kind, signature (null for exact-only texts) and shingles;
    `sketches` may be given as their `to_arrow` table."""
    table = sketches if isinstance(sketches, pa.Table) else sketches.to_arrow()
    return table.add_column(0, "id", pa.array(ids, type=pa.string())).cast(SCHEMA)


def load_sketches(path: Path, ids: list[str]) -> Sketches:
    """The saved sketches of `ids`, in that order."""
    table = read_arrow(path, "dedup", SCHEMA.names)
    position = {item: i for i, item in enumerate(table["id"].to_pylist())}
    missing = [i for i in ids if i not in position]
    if missing:
        raise CurationError(f"no signature for item {missing[0]}; run `curate dedup` again",
                            file=str(path), field="id")
    saved = Sketches.from_arrow(table)
    return saved.take(np.array([position[i] for i in ids], dtype=np.int64))


def embeddings_table(ids: list[str], vectors: np.ndarray) -> pa.Table:
    """`data/embeddings.parquet`: each kept item's vector, for split's cosine report."""
    dim = vectors.shape[1] if vectors.ndim == 2 and vectors.shape[1] else 1  # 1: no rows
    return pa.table({"id": pa.array(ids, type=pa.string()),
                     "vector": pa.FixedSizeListArray.from_arrays(
                         pa.array(vectors.ravel(), type=pa.float32()), dim)})


def vector_matrix(column: pa.ChunkedArray | pa.Array) -> np.ndarray:
    """A column of fixed-size vectors without nulls as one (rows, size) numpy matrix
    (zero-copy when the column is one chunk)."""
    vectors = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    return vectors.flatten().to_numpy().reshape(len(vectors), vectors.type.list_size)


def load_embeddings(path: Path, ids: list[str]) -> np.ndarray:
    """The saved vectors of `ids`, in that order."""
    try:
        saved = read_arrow(path, "families", ["id", "vector"])
        matrix = vector_matrix(saved["vector"])
    except (OSError, ValueError, AttributeError, pa.ArrowException) as exc:
        raise CurationError(f"not a table of vectors ({first_line(exc)}); run "
                            "`curate families` again", file=str(path)) from None
    broken = np.flatnonzero(~np.isfinite(matrix).all(axis=1))
    if len(broken):
        raise CurationError("vector holds NaN or infinite values; run `curate families` "
                            "again", file=str(path), row=int(broken[0]) + 1, field="vector")
    position = {item: i for i, item in enumerate(saved["id"].to_pylist())}
    missing = [i for i in ids if i not in position]
    if missing:
        raise CurationError(f"no embedding for item {missing[0]}; run `curate families` "
                            "again", file=str(path), field="id")
    return matrix[[position[i] for i in ids]]


NEIGHBOURS = pa.schema([("a", pa.int32()), ("b", pa.int32()), ("cosine", pa.float32())])


def neighbours_table(pairs: np.ndarray, scores: np.ndarray) -> pa.Table:
    """`data/neighbours.parquet`: each item's nearest neighbours as pairs of rows of
    `data/embeddings.parquet` (a < b) with their cosine, so split checks leaks in linear
    time instead of searching again."""
    return pa.table({"a": pa.array(pairs[:, 0], pa.int32()), "b": pa.array(pairs[:, 1], pa.int32()),
                     "cosine": pa.array(scores, pa.float32())}, schema=NEIGHBOURS)


def load_neighbours(path: Path, embeddings: Path, ids: list[str]) -> tuple[np.ndarray,
                                                                         np.ndarray]:
    """The saved neighbour pairs between `ids`, as rows of `ids`, with their cosines."""
    saved = read_arrow(path, "families", NEIGHBOURS.names)
    saved_ids = read_arrow(embeddings, "families", ["id"], only=["id"])["id"].to_pylist()
    position = {item: i for i, item in enumerate(ids)}
    row = np.array([position.get(item, -1) for item in saved_ids], dtype=np.int64)
    a = row[saved["a"].to_numpy()] if len(row) else np.empty(0, dtype=np.int64)
    b = row[saved["b"].to_numpy()] if len(row) else np.empty(0, dtype=np.int64)
    both = (a >= 0) & (b >= 0)
    return np.column_stack([a[both], b[both]]), saved["cosine"].to_numpy()[both]
