"""Deterministic, all-or-nothing output: a stage's files appear together or not at all."""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path
from types import TracebackType
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


def read_parquet(path: str | Path) -> pd.DataFrame:
    return pq.read_table(path).to_pandas()


def read_json(path: Path) -> Any:
    return json.loads(path.read_text(encoding="utf-8"))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def dumps_json(obj: Any) -> str:
    return json.dumps(obj, indent=2, ensure_ascii=False, sort_keys=False) + "\n"


class StagedWrites:
    """Write files to temporaries next to their targets; rename all of them on success.

    Used as a context manager: if the block raises, every temporary is removed and no
    target is touched, so a failing stage leaves no partial output.
    """

    def __init__(self) -> None:
        self._pending: list[tuple[Path, Path]] = []
        self._writers: list[pq.ParquetWriter] = []

    def _temporary(self, target: str | Path) -> Path:
        target = Path(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        self._pending.append((Path(tmp), target))
        return Path(tmp)

    def parquet(self, frame: pd.DataFrame | pa.Table, target: str | Path) -> None:
        table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(
            frame, preserve_index=False)
        pq.write_table(table, self._temporary(target), compression="zstd")

    def parquet_writer(self, target: str | Path, schema: pa.Schema,
                       compression: str = "zstd") -> pq.ParquetWriter:
        """A writer for a table written in batches; closed before the rename."""
        writer = pq.ParquetWriter(self._temporary(target), schema, compression=compression)
        self._writers.append(writer)
        return writer

    def json(self, obj: Any, target: str | Path) -> None:
        self._temporary(target).write_text(dumps_json(obj), encoding="utf-8")

    def text(self, text: str, target: str | Path) -> None:
        self._temporary(target).write_text(text, encoding="utf-8")

    def __enter__(self) -> StagedWrites:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        for writer in self._writers:
            writer.close()
        self._writers.clear()
        if exc_type is None:
            for tmp, target in self._pending:
                os.replace(tmp, target)
        else:
            for tmp, _ in self._pending:
                tmp.unlink(missing_ok=True)
        self._pending.clear()
