"""Sketches and embeddings on disk (`data/signatures.parquet`, `data/embeddings.parquet`):
one row per item, keyed by id, so later stages search at other thresholds without
re-reading, re-hashing or re-embedding any text."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from curation.core.errors import CurationError
from curation.core.tableio import StagedWrites, open_input
from curation.neardup.minhash import Sketches

SCHEMA = pa.schema([("id", pa.string()), ("exact", pa.uint64()), ("kind", pa.int8()),
                    ("signature", pa.list_(pa.uint32())),
                    ("shingles", pa.large_list(pa.uint32()))])
_ROWS_PER_WRITE = 100_000


def write_sketches(out: StagedWrites, path: Path, ids: list[str], sketches: Sketches,
                   rows: np.ndarray) -> None:
    """Stage the sketches of `rows` (with their `ids`), a block of rows at a time.

    Uncompressed: hashes do not compress, and zstd would only cost time.
    """
    writer = out.parquet_writer(path, SCHEMA, compression="none")
    for start in range(0, len(rows), _ROWS_PER_WRITE):
        block = slice(start, start + _ROWS_PER_WRITE)
        writer.write_table(to_table(ids[block], sketches.take(rows[block])))


def to_table(ids: list[str], sketches: Sketches) -> pa.Table:
    """id, exact key, shingle kind, signature (null for exact-only texts) and shingles."""
    n = len(sketches)
    num_perm = sketches.signatures.shape[1] if sketches.signatures.ndim == 2 else 0
    has = np.zeros(n, dtype=bool)
    has[sketches.sketched] = True
    sig_offsets = np.zeros(n + 1, dtype=np.int32)
    sig_offsets[1:] = np.cumsum(has * num_perm)
    signatures = pa.ListArray.from_arrays(
        pa.array(sig_offsets), pa.array(sketches.signatures.ravel(), type=pa.uint32()),
        mask=pa.array(~has))
    shingles = pa.LargeListArray.from_arrays(
        pa.array(sketches.offsets), pa.array(sketches.shingles, type=pa.uint32()))
    return pa.table({"id": pa.array(ids, type=pa.string()),
                     "exact": pa.array(sketches.exact, type=pa.uint64()),
                     "kind": pa.array(sketches.kinds, type=pa.int8()),
                     "signature": signatures, "shingles": shingles}, schema=SCHEMA)


def load_sketches(path: Path, ids: list[str]) -> Sketches:
    """The saved sketches of `ids`, in that order."""
    table = open_input(path, "dedup", SCHEMA.names).read()
    position = {item: i for i, item in enumerate(table["id"].to_pylist())}
    missing = [i for i in ids if i not in position]
    if missing:
        raise CurationError(f"no signature for item {missing[0]}; run `curate dedup` again",
                            file=str(path), field="id")
    signatures = table["signature"].combine_chunks()
    shingles = table["shingles"].combine_chunks()
    has = signatures.is_valid().to_numpy(zero_copy_only=False)
    num_perm = len(signatures[int(np.argmax(has))]) if has.any() else 0
    saved = Sketches(
        exact=table["exact"].to_numpy(), kinds=table["kind"].to_numpy(),
        signatures=signatures.flatten().to_numpy().reshape(-1, num_perm) if num_perm else
        np.empty((0, 0), dtype=np.uint32),
        sketched=np.flatnonzero(has),
        shingles=shingles.flatten().to_numpy(zero_copy_only=False).astype(np.uint32),
        lengths=np.diff(shingles.offsets.to_numpy()).astype(np.int64))
    return saved.take(np.array([position[i] for i in ids], dtype=np.int64))


def embeddings_table(ids: list[str], vectors: np.ndarray) -> pa.Table:
    """`data/embeddings.parquet`: each kept item's vector, for split's cosine report."""
    dim = vectors.shape[1] if vectors.ndim == 2 and vectors.shape[1] else 1  # 1: no rows
    return pa.table({"id": pa.array(ids, type=pa.string()),
                     "vector": pa.FixedSizeListArray.from_arrays(
                         pa.array(vectors.ravel(), type=pa.float32()), dim)})


def load_embeddings(path: Path, ids: list[str]) -> np.ndarray:
    """The saved vectors of `ids`, in that order."""
    try:
        saved = open_input(path, "families", ["id", "vector"]).read()
        vectors = saved["vector"].combine_chunks()
        matrix = vectors.flatten().to_numpy().reshape(len(saved), vectors.type.list_size)
    except (OSError, ValueError, AttributeError, pa.ArrowException) as exc:
        raise CurationError(f"not a table of vectors ({str(exc).splitlines()[0]}); run "
                            "`curate families` again", file=str(path)) from None
    position = {item: i for i, item in enumerate(saved["id"].to_pylist())}
    missing = [i for i in ids if i not in position]
    if missing:
        raise CurationError(f"no embedding for item {missing[0]}; run `curate families` "
                            "again", file=str(path), field="id")
    return matrix[[position[i] for i in ids]]
