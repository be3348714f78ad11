"""Deterministic, all-or-nothing output: a stage's files appear together or not at all."""

from __future__ import annotations

import contextlib
import csv
import glob
import hashlib
import io
import json
import os
import shutil
import socket
import tempfile
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from curation.core.errors import CurationError, first_line
from curation.core.items import from_arrow
from curation.core.processes import alive, start_time


def parquet_file(source: str | Path | BinaryIO) -> pq.ParquetFile:
    """A parquet file to stream a batch at a time. Without pre-buffering: with it, pyarrow
    keeps every column chunk read so far until the file is closed, so memory grew by the
    size of the file read (about 450 MB a 10,000-row batch at a time over 2M spooled
    items; apache/arrow#39808)."""
    return pq.ParquetFile(source, pre_buffer=False)


class SpillFile:
    """Tables written one after another and read back in order: what a stage cannot hold
    waits here. Up to `memory` bytes of them stay in memory; past that, all go to a
    temporary parquet file, made then (the first table sets the schema; later ones are
    cast to it) and removed on `close`, or when the `with` block ends. Given the `rows`
    that will be written, tables go to disk from the first one whose size per row says
    they will not all fit (holding some first would only add to the peak). Its folder is named
    after the process, so a spill that a killed run left behind (SIGKILL, a crash) is
    removed by the next one to spill."""

    def __init__(self, prefix: str, memory: int = 0, rows: int | None = None) -> None:
        self.prefix, self.memory, self.expected = prefix, memory, rows
        self.rows = 0
        self._schema: pa.Schema | None = None
        self._held: list[tuple[pa.Table, int | None]] = []  # (table, row group size)
        self._held_bytes = 0
        self._folder: tempfile.TemporaryDirectory[str] | None = None
        self._writer: pq.ParquetWriter | None = None
        self._sealed = False

    @property
    def path(self) -> Path | None:
        """The file, once tables went to disk."""
        return None if self._folder is None else Path(self._folder.name) / "spill.parquet"

    def write(self, table: pa.Table, row_group_size: int | None = None) -> None:
        """Append `table` (on disk, one row group per `row_group_size` rows; default:
        arrow's)."""
        if self._sealed:
            raise RuntimeError(f"spill file {self.prefix}: written after it was read")
        self._schema = self._schema or table.schema
        table = table.cast(self._schema)
        if self._writer is None and self._held_bytes + table.nbytes <= self.memory and (
                self.expected is None or not table.num_rows
                or table.nbytes / table.num_rows * self.expected <= self.memory):
            self._held.append((table, row_group_size))
            self._held_bytes += table.nbytes
        else:
            self._to_disk()
            self._writer.write_table(table, row_group_size=row_group_size)
        self.rows += table.num_rows

    def _to_disk(self) -> None:
        if self._writer is None:
            _remove_orphans()
            self._folder = tempfile.TemporaryDirectory(
                prefix=f"{_SPILLS}-{_owner()}-{self.prefix}-")
            self._writer = pq.ParquetWriter(self.path, self._schema, compression="none",
                                            use_dictionary=False)  # 3-4x faster to write
            for table, row_group_size in self._held:
                self._writer.write_table(table, row_group_size=row_group_size)
            self._held, self._held_bytes = [], 0

    def reader(self) -> pq.ParquetFile | None:
        """The file of what was written (held tables go to disk first; None if nothing
        was written), to stream or to read by row group; no table may be written after."""
        if self._held:
            self._to_disk()
        self._sealed = self._sealed or self._schema is not None
        if self._writer is not None:
            self._writer.close()
        return None if self.path is None else parquet_file(self.path)

    def batches(self, batch_size: int, columns: list[str] | None = None
                ) -> Iterator[pa.RecordBatch]:
        """What was written, in batches of at most `batch_size` rows."""
        if self._writer is None:
            self._sealed = self._sealed or self._schema is not None
            for table, _ in self._held:
                yield from (table.select(columns) if columns else table).to_batches(
                    max_chunksize=batch_size)
            return
        reader = self.reader()
        yield from reader.iter_batches(batch_size=batch_size, columns=columns)

    def row_groups(self) -> Iterator[pa.Table]:
        """The row groups written, in order (a table each, when tables were written whole
        and smaller than arrow's row group); held tables go to disk first."""
        reader = self.reader()
        for group in range(reader.num_row_groups if reader is not None else 0):
            yield reader.read_row_group(group)

    def close(self) -> None:
        try:
            if self._writer is not None:
                self._writer.close()
        finally:
            if self._folder is not None:
                self._folder.cleanup()
            self._writer = self._folder = self._schema = None
            self._held, self._held_bytes = [], 0
            self.rows, self._sealed = 0, False

    def __enter__(self) -> SpillFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_SPILLS = "curate-spill"  # a spill folder: curate-spill-<host>-<pid>-<start>-<prefix>-<random>


def _owner() -> str:
    """This process as a spill folder names it: a hash of the host name (a `TMPDIR` may
    be shared between machines), the pid and the kernel's start time of the process (a
    pid is reused)."""
    host = hashlib.blake2b(socket.gethostname().encode(), digest_size=4).hexdigest()
    return f"{host}-{os.getpid()}-{start_time(os.getpid()) or 0}"


def _remove_orphans() -> None:
    """Remove the spill folders of this host whose process is gone (a live one, another
    run's, is left alone; so is another host's)."""
    host = _owner().split("-", 1)[0]
    for folder in Path(tempfile.gettempdir()).glob(f"{_SPILLS}-{host}-*-*-*"):
        pid, started = folder.name[len(_SPILLS) + len(host) + 2:].split("-")[:2]
        if pid.isdigit() and started.isdigit() and not alive(
                int(pid), None if started == "0" else started, reap=False):
            shutil.rmtree(folder, ignore_errors=True)


def _umask() -> int:
    """The process's umask, read once at import (setting it to read it is not thread-safe
    later, when stages write on threads)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


_FILE_MODE = 0o666 & ~_umask()  # what `open` gives a new file; mkstemp gives 0600


ROWS_PER_GROUP = 25_000  # a stage table's row groups, whatever the batches it is built from


class RowGroups:
    """Tables of any sizes to a parquet writer as row groups of exactly `rows` rows (the
    last one fewer), so a file's layout does not depend on the batches it was built from;
    `close` writes what is held. Groups are joined and written on a thread of their own
    (arrow releases the GIL to encode and compress), one at a time, while the caller
    prepares the next; `StagedWrites.row_groups` makes one that its block closes."""

    def __init__(self, writer: pq.ParquetWriter, rows: int) -> None:
        self.writer, self.rows = writer, rows
        self._held: list[pa.Table] = []
        self._count = 0
        self._thread = ThreadPoolExecutor(1, thread_name_prefix="row-groups")
        self._writing: Future[None] | None = None

    def write(self, table: pa.Table) -> None:
        if table.num_rows:
            self._held.append(table.cast(self.writer.schema))
            self._count += table.num_rows
        if self._count >= self.rows:
            whole, self._held = _split(self._held, self._count - self._count % self.rows)
            self._count %= self.rows
            self._submit(whole)

    def close(self) -> None:
        """Write what is held and wait until all is written."""
        try:
            if self._held:
                self._submit(self._held)
            self._held, self._count = [], 0
            self._wait()
        finally:
            self._thread.shutdown()

    def discard(self) -> None:
        """Wait for the group being written, and write nothing more (a failed stage)."""
        with contextlib.suppress(Exception):
            self._wait()
        self._held, self._count = [], 0
        self._thread.shutdown()

    def _submit(self, tables: list[pa.Table]) -> None:
        self._wait()
        self._writing = self._thread.submit(self._write, tables)

    def _write(self, tables: list[pa.Table]) -> None:
        whole = pa.concat_tables(tables).combine_chunks()  # pages do not follow chunks
        self.writer.write_table(whole, row_group_size=self.rows)

    def _wait(self) -> None:
        writing, self._writing = self._writing, None
        if writing is not None:
            writing.result()  # raises what writing raised


def _split(tables: list[pa.Table], rows: int) -> tuple[list[pa.Table], list[pa.Table]]:
    """The first `rows` rows of `tables`, and the rest (slices: nothing is copied)."""
    first: list[pa.Table] = []
    for i, table in enumerate(tables):
        if rows < table.num_rows:
            rest = [table.slice(rows), *tables[i + 1:]]
            return ([*first, table.slice(0, rows)] if rows else first), rest
        first.append(table)
        rows -= table.num_rows
    return first, []


class RowCursor:
    """Consecutive rows of a stream of batches, taken `count` at a time whatever the
    batches' sizes: to walk two tables of the same rows in step."""

    def __init__(self, batches: Iterable[pa.RecordBatch]) -> None:
        self._batches = iter(batches)
        self._held: list[pa.RecordBatch] = []
        self._count = 0
        self._schema = pa.schema([])

    def take(self, count: int) -> pa.Table:
        """The next `count` rows (fewer only at the end of the stream)."""
        while self._count < count:
            batch = next(self._batches, None)
            if batch is None:
                break
            self._schema = batch.schema
            self._held.append(batch)
            self._count += batch.num_rows
        table = pa.Table.from_batches(self._held, schema=self._schema)
        taken, rest = table.slice(0, count), table.slice(count)
        self._held = rest.to_batches()
        self._count = rest.num_rows
        return taken


def open_input(path: Path, stage: str, columns: Iterable[str]) -> pq.ParquetFile:
    """A table an earlier stage wrote, checked before use: it exists, is parquet and has
    the columns that stage writes. Every problem is one line that says what to rerun."""
    if not path.exists():
        raise CurationError(f"not found; run `curate {stage}` first", file=str(path))
    try:
        table = parquet_file(path)
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise CurationError(f"not a readable parquet file ({first_line(exc)}); run "
                            f"`curate {stage}` again", file=str(path)) from None
    missing = [c for c in columns if c not in table.schema_arrow.names]
    if missing:
        raise CurationError(f"has no column '{missing[0]}', which `curate {stage}` writes; "
                            f"run `curate {stage}` again", file=str(path), field=missing[0])
    for name, column in columns.items() if isinstance(columns, dict) else ():
        held = table.schema_arrow.field(name).type
        kind = _kind(str(getattr(column, "dtype", "")))
        if kind and not _holds(held, kind, bool(getattr(column, "nullable", False))):
            raise CurationError(f"column '{name}' holds {held}, not the {kind} `curate {stage}` "
                                f"writes; run `curate {stage}` again", file=str(path),
                                field=name)
    return table


def _kind(dtype: str) -> str | None:
    """The kind of arrow type a pandera dtype of our schemas is written as."""
    for prefix, kind in (("str", "text"), ("object", "list or struct"), ("float", "number"),
                         ("int", "integer"), ("bool", "boolean")):
        if dtype.startswith(prefix):
            return kind
    return None


def _holds(held: pa.DataType, kind: str, nullable: bool) -> bool:
    """Whether an arrow type is of `kind` (a column of nulls only: if it may be null)."""
    if pa.types.is_null(held):
        return nullable
    if pa.types.is_dictionary(held):
        held = held.value_type
    return {"text": pa.types.is_string(held) or pa.types.is_large_string(held),
            "list or struct": pa.types.is_list(held) or pa.types.is_large_list(held)
            or pa.types.is_struct(held),
            "number": pa.types.is_floating(held) or pa.types.is_integer(held),
            "integer": pa.types.is_integer(held),
            "boolean": pa.types.is_boolean(held)}[kind]


def read_input(path: Path, stage: str, columns: Iterable[str],
               only: list[str] | None = None) -> pd.DataFrame:
    """`open_input`, then the whole table, or just its columns `only` (a corrupt page is
    the same one-line error)."""
    table = open_input(path, stage, columns)
    with _readable(path, stage):
        return from_arrow(table.read(columns=only))


def read_arrow(path: Path, stage: str, columns: Iterable[str],
               only: list[str] | None = None) -> pa.Table:
    """`open_input`, then the whole table (or just its columns `only`) in arrow: no Python
    object per value, and a corrupt page is the same one-line error."""
    table = open_input(path, stage, columns)
    with _readable(path, stage):
        return table.read(columns=only)


def arrow_batches(path: Path, stage: str, columns: Iterable[str], rows: int,
                  only: list[str] | None = None) -> Iterator[pa.Table]:
    """`open_input`, then the table `rows` rows at a time, in arrow (just the columns
    `only`, when given): an empty table is one empty batch, with its columns. A corrupt
    page is the same one-line error."""
    table = open_input(path, stage, columns)
    with _readable(path, stage):
        read = 0
        for batch in table.iter_batches(batch_size=rows, columns=only):
            read += 1
            yield pa.Table.from_batches([batch])
        if not read:
            empty = table.schema_arrow.empty_table()
            yield empty.select(only) if only is not None else empty


def read_batches(path: Path, stage: str, columns: Iterable[str], rows: int,
                 only: list[str] | None = None) -> Iterator[pd.DataFrame]:
    """`arrow_batches` as item frames."""
    for batch in arrow_batches(path, stage, columns, rows, only):
        yield from_arrow(batch)


@contextlib.contextmanager
def _readable(path: Path, stage: str) -> Iterator[None]:
    """Reading an earlier stage's table: a corrupt page is one line saying what to rerun."""
    try:
        yield
    except (OSError, ValueError, pa.ArrowException) as exc:
        raise CurationError(f"not a readable parquet file ({first_line(exc)}); run "
                            f"`curate {stage}` again", file=str(path)) from None


def check_unique(path: Path, stage: str, column: str) -> None:
    """Stop on a value of `column` (an id an earlier stage made unique) that two rows of
    the table share, naming both rows: a stage that streams would otherwise see each copy
    in a different batch. Holds a 64-bit hash per row, and the values of rows whose hash
    repeats."""
    table = open_input(path, stage, [column])
    with _readable(path, stage):
        hashes = np.concatenate([np.empty(0, np.uint64), *map(_hashes, table.iter_batches(
            batch_size=_CHECK_ROWS, columns=[column]))])
    _, inverse, counts = np.unique(hashes, return_inverse=True, return_counts=True)
    suspects = np.flatnonzero(counts[inverse.ravel()] > 1)
    if not len(suspects):
        return
    seen: dict[str, int] = {}
    for batch_start, batch in _numbered(parquet_file(path).iter_batches(
            batch_size=_CHECK_ROWS, columns=[column])):
        lo, hi = np.searchsorted(suspects, [batch_start, batch_start + batch.num_rows])
        values = batch.column(0).to_pylist()
        for row in suspects[lo:hi].tolist():
            value = values[row - batch_start]
            if value is not None and value in seen:
                raise CurationError(f"'{value}' is also in row {seen[value] + 1}: ids must be "
                                    f"unique; run `curate {stage}` again", file=str(path),
                                    row=row + 1, field=column)
            seen[value] = row


_CHECK_ROWS = 100_000


def _hashes(batch: pa.RecordBatch) -> np.ndarray:
    """xxh64 of each value of a batch's one text column (null as empty)."""
    import xxhash

    return np.fromiter((xxhash.xxh64_intdigest(("" if v is None else v).encode(
        "utf-8", "surrogatepass")) for v in batch.column(0).to_pylist()), np.uint64,
        count=batch.num_rows)


def _numbered(batches: Iterable[pa.RecordBatch]) -> Iterator[tuple[int, pa.RecordBatch]]:
    """Each batch with the position of its first row."""
    start = 0
    for batch in batches:
        yield start, batch
        start += batch.num_rows


def read_report(path: Path, stage: str) -> dict[str, Any]:
    """A JSON report an earlier stage wrote; a damaged one is one line saying what to
    rerun."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CurationError(f"not found; run `curate {stage}` first", file=str(path)) from None
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise CurationError(f"not a readable report ({first_line(exc)}); run `curate {stage}` "
                            "again", file=str(path)) from None
    if not isinstance(report, dict):
        raise CurationError(f"not a report (a JSON {type(report).__name__}, not an object); "
                            f"run `curate {stage}` again", file=str(path))
    return report


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
        self._row_groups: list[RowGroups] = []
        self._made: list[Path] = []  # folders made for temporaries, removed on failure

    def _temporary(self, target: str | Path) -> Path:
        target = Path(target)
        missing = [p for p in [target.parent, *target.parent.parents] if not p.exists()]
        target.parent.mkdir(parents=True, exist_ok=True)
        self._made.extend(missing)
        for stale in target.parent.glob(f".{glob.escape(target.name)}.*.tmp"):
            stale.unlink(missing_ok=True)  # left by a run that was killed mid-write
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
        os.close(fd)
        self._pending.append((Path(tmp), target))
        return Path(tmp)

    def parquet(self, frame: pd.DataFrame | pa.Table, target: str | Path) -> None:
        table = frame if isinstance(frame, pa.Table) else pa.Table.from_pandas(
            frame, preserve_index=False)
        pq.write_table(table, self._temporary(target), compression="zstd")

    def parquet_writer(self, target: str | Path, schema: pa.Schema, compression: str = "zstd",
                       use_dictionary: bool = True) -> pq.ParquetWriter:
        """A writer for a table written in batches; closed before the rename."""
        writer = pq.ParquetWriter(self._temporary(target), schema, compression=compression,
                                  use_dictionary=use_dictionary)
        self._writers.append(writer)
        return writer

    def row_groups(self, target: str | Path, schema: pa.Schema, rows: int,
                   compression: str = "zstd", use_dictionary: bool = True) -> RowGroups:
        """A `RowGroups` writer of `target`, closed when the block ends (or, if it
        fails, stopped once the group being written is written)."""
        groups = RowGroups(self.parquet_writer(target, schema, compression, use_dictionary),
                           rows)
        self._row_groups.append(groups)
        return groups

    def json(self, obj: Any, target: str | Path) -> None:
        self._temporary(target).write_text(dumps_json(obj), encoding="utf-8")

    def text(self, text: str, target: str | Path) -> None:
        self._temporary(target).write_text(text, encoding="utf-8")

    def csv(self, columns: list[str], rows: list[list[Any]], target: str | Path) -> None:
        """A small table (a dvc plot's data): a header, then one line per row."""
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        writer.writerow(columns)
        writer.writerows(rows)
        self.text(buffer.getvalue(), target)

    def __enter__(self) -> StagedWrites:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        failed: BaseException | None = None  # a failure while closing: nothing is published
        for groups in self._row_groups:
            if exc_type is None and failed is None:
                try:
                    groups.close()
                except BaseException as error:  # Terminated and Ctrl-C included
                    failed = error
            groups.discard()
        self._row_groups.clear()
        for writer in self._writers:
            try:
                writer.close()
            except BaseException as error:
                failed = failed or error
        self._writers.clear()
        if exc_type is None and failed is None:
            for tmp, target in self._pending:
                os.chmod(tmp, _FILE_MODE)  # mkstemp's 0600 would hide outputs from others
                os.replace(tmp, target)
        else:
            for tmp, _ in self._pending:
                tmp.unlink(missing_ok=True)
            for folder in sorted(self._made, key=lambda f: len(f.parts), reverse=True):
                if folder.exists() and not any(folder.iterdir()):
                    folder.rmdir()
        self._pending.clear()
        self._made.clear()
        if failed is not None and exc_type is None:
            raise failed
