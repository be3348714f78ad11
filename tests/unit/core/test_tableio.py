"""Staged writes are all or nothing (a failing stage leaves no file and no folder it made);
streamed parquet files are read without holding them whole."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from curation.core import tableio
from curation.core.errors import CurationError
from curation.core.processes import start_time
from curation.core.tableio import (
    RowCursor,
    RowGroups,
    SpillFile,
    StagedWrites,
    check_unique,
    parquet_file,
)


def test_a_failed_block_leaves_no_file_and_no_folder_it_made(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "kept.txt").write_text("there before")
    with pytest.raises(RuntimeError), StagedWrites() as out:
        out.json({"a": 1}, tmp_path / "data" / "raw" / "deep" / "x.json")
        out.parquet_writer(tmp_path / "data" / "dropped" / "y.parquet",
                           pa.schema([("a", pa.int64())]))
        out.text("z", tmp_path / "reports" / "z.txt")
        raise RuntimeError("the stage fails")
    assert sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*")) == [
        "data", "data/kept.txt"]


def test_a_finished_block_renames_every_file_into_place(tmp_path: Path) -> None:
    with StagedWrites() as out:
        out.json({"a": 1}, tmp_path / "data" / "x.json")
        writer = out.parquet_writer(tmp_path / "data" / "y.parquet", pa.schema([("a", pa.int64())]))
        writer.write_table(pa.table({"a": [1, 2]}))
    assert sorted(p.name for p in (tmp_path / "data").iterdir()) == ["x.json", "y.parquet"]
    umask = os.umask(0)
    os.umask(umask)
    for path in (tmp_path / "data").iterdir():  # as `open` makes them, not mkstemp's 0600
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


def test_a_streamed_file_is_not_held_whole(tmp_path: Path) -> None:
    """Reading batch after batch holds about one batch in arrow memory, not every batch
    read so far (pyarrow's pre-buffering did: apache/arrow#39808)."""
    path = tmp_path / "big.parquet"
    texts = pa.array([f"row {i} " + "x" * 1_000 for i in range(2_000)], pa.large_string())
    with pq.ParquetWriter(path, pa.schema([("text", pa.large_string()),
                                           ("turns", pa.list_(pa.string()))]),
                          compression="none") as writer:
        for _ in range(40):  # 40 row groups of about 2 MB
            writer.write_table(pa.table({"text": texts, "turns": pa.array(
                [["a", "b"]] * len(texts), pa.list_(pa.string()))}))
    start = pa.total_allocated_bytes()
    held = []
    for batch in parquet_file(path).iter_batches(batch_size=2_000):
        held.append(pa.total_allocated_bytes() - start)
        del batch
    assert len(held) == 40
    assert max(held) < 10 * 2**20, f"arrow memory grew to {max(held) / 2**20:.0f} MB"


def test_a_spill_file_reads_back_in_order_and_is_removed_on_close(tmp_path: Path) -> None:
    with SpillFile("test") as spill:
        assert list(spill.batches(10)) == [] and spill.path is None
        spill.write(pa.table({"a": pa.array([1, 2], pa.int32())}))
        spill.write(pa.table({"a": pa.array([3], pa.int64())}))  # cast to the first schema
        folder = spill.path.parent
        read = pa.Table.from_batches(list(spill.batches(2)))
        assert read["a"].to_pylist() == [1, 2, 3] and read.schema.field("a").type == pa.int32()
        assert spill.rows == 3
        with pytest.raises(RuntimeError, match="written after it was read"):
            spill.write(pa.table({"a": pa.array([4], pa.int32())}))
    assert not folder.exists()
    spill.write(pa.table({"a": pa.array([5], pa.int32())}))  # closed: a fresh file
    assert [b["a"].to_pylist() for b in spill.batches(10)] == [[5]] and spill.rows == 1
    spill.close()


def test_a_spill_file_holds_tables_in_memory_up_to_its_budget_then_goes_to_disk() -> None:
    def table(start: int, kind: pa.DataType | None = None) -> pa.Table:
        return pa.table({"a": pa.array(range(start, start + 100), kind or pa.int64())})  # 800 B

    with SpillFile("test", memory=2000) as spill:
        spill.write(table(0), row_group_size=30)
        spill.write(table(100, pa.int32()))  # cast to the first schema
        assert spill.path is None and spill.rows == 200  # 1,600 bytes: held
        assert [b.num_rows for b in spill.batches(64)] == [64, 36, 64, 36]
        assert [t.num_rows for t in spill.row_groups()] == [30, 30, 30, 10, 100]
        assert pa.concat_tables(spill.row_groups())["a"].to_pylist() == list(range(200))
        with pytest.raises(RuntimeError, match="written after it was read"):
            spill.write(table(200))
    with SpillFile("test", memory=2000, rows=300) as spill:  # 2,400 bytes will not fit
        spill.write(table(0))
        assert spill.path.is_file()
    with SpillFile("test", memory=2000) as spill:
        for start in (0, 100, 200):  # the third passes the budget: all go to disk
            spill.write(table(start), row_group_size=30)
        assert spill.path.is_file() and spill.rows == 300
        assert [t.num_rows for t in spill.row_groups()] == [30, 30, 30, 10] * 3
        read = pa.Table.from_batches(list(spill.batches(64)))
        assert read["a"].to_pylist() == list(range(300))


def test_a_spill_removes_the_spills_of_processes_that_are_gone(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    host, pid, started = tableio._owner().split("-")
    assert int(pid) == os.getpid() and started.isdigit()
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    parent = os.getppid()
    orphans = [f"curate-spill-{host}-{gone.pid}-0-dedup-sketches-x1",  # a dead pid
               f"curate-spill-{host}-{parent}-1-pull-a-x2"]  # a live pid, started otherwise
    kept = [f"curate-spill-{host}-{parent}-{start_time(parent)}-pull-a-2-x3",  # still going
            f"curate-spill-ffffffff-{gone.pid}-0-ledger-x4",  # another host's
            "curate-spill-notapid-x5"]
    for name in orphans + kept:
        (tmp_path / name).mkdir()
        (tmp_path / name / "spill.parquet").write_bytes(b"")
    with SpillFile("pull-a") as spill:
        spill.write(pa.table({"a": [1]}))
        assert spill.path.parent.name.startswith(f"curate-spill-{tableio._owner()}-pull-a-")
        assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
            [*kept, spill.path.parent.name])


def test_a_row_cursor_takes_any_count_whatever_the_batch_sizes() -> None:
    batches = [pa.record_batch({"a": pa.array(range(start, stop), pa.int64())})
               for start, stop in [(0, 3), (3, 4), (4, 9), (9, 9), (9, 12)]]
    cursor = RowCursor(batches)
    taken = [cursor.take(count)["a"].to_pylist() for count in (2, 4, 0, 3, 5)]
    assert taken == [[0, 1], [2, 3, 4, 5], [], [6, 7, 8], [9, 10, 11]]
    assert cursor.take(1).num_rows == 0


def test_row_groups_have_one_size_whatever_the_tables_written(tmp_path: Path) -> None:
    def layout(sizes: list[int]) -> tuple[list[int], bytes]:
        path = tmp_path / f"{'-'.join(map(str, sizes))}.parquet"
        schema = pa.schema([("a", pa.int64())])
        with pq.ParquetWriter(path, schema, data_page_size=64) as writer:  # pages of 8 rows
            groups = RowGroups(writer, 8)
            start = 0
            for size in sizes:
                groups.write(pa.table({"a": pa.array(range(start, start + size), pa.int64())}))
                start += size
            groups.close()
        read = pq.ParquetFile(path)
        assert pq.read_table(path)["a"].to_pylist() == list(range(sum(sizes)))
        return [read.metadata.row_group(g).num_rows for g in range(read.num_row_groups)], (
            path.read_bytes())

    one, same = layout([20]), layout([3, 0, 1, 5, 1, 6, 4])
    assert one[0] == same[0] == [8, 8, 4] and one[1] == same[1]


def test_staged_row_groups_are_written_when_the_block_ends(tmp_path: Path) -> None:
    schema = pa.schema([("a", pa.int64())])
    with StagedWrites() as out:
        groups = out.row_groups(tmp_path / "t.parquet", schema, 4)
        for start in range(0, 10, 3):  # 10 rows; 2 left held when the block ends
            groups.write(pa.table({"a": range(start, min(start + 3, 10))}, schema=schema))
    read = pq.ParquetFile(tmp_path / "t.parquet")
    assert [read.metadata.row_group(g).num_rows for g in range(read.num_row_groups)] == [4, 4, 2]
    assert read.read()["a"].to_pylist() == list(range(10))

    with pytest.raises(ValueError, match="stage failed"), StagedWrites() as out:
        groups = out.row_groups(tmp_path / "u.parquet", schema, 4)
        groups.write(pa.table({"a": range(9)}, schema=schema))  # two groups being written
        raise ValueError("stage failed")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.parquet"]


def test_a_failure_while_closing_publishes_nothing(tmp_path: Path) -> None:
    def disk_full(*args: object, **kwargs: object) -> None:
        raise OSError("No space left on device")

    schema = pa.schema([("a", pa.int64())])
    with pytest.raises(OSError, match="No space left"), StagedWrites() as out:
        out.json({"x": 1}, tmp_path / "r.json")
        groups = out.row_groups(tmp_path / "t.parquet", schema, 4)
        groups.write(pa.table({"a": range(2)}, schema=schema))  # held until the block ends
        groups.writer.write_table = disk_full  # fails when the block writes the held rows
    assert list(tmp_path.iterdir()) == []


def test_a_repeated_id_is_one_line_naming_both_rows(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tableio, "_CHECK_ROWS", 3)  # the copies sit in different batches
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"id": ["a", "b", None, "c", None, "d", "e", "b"]}), path)
    with pytest.raises(CurationError) as raised:
        check_unique(path, "families", "id")
    assert str(raised.value) == (f"{path}, row 8: field 'id': 'b' is also in row 2: ids must "
                                 "be unique; run `curate families` again")
    pq.write_table(pa.table({"id": ["a", "b", None, "c", None, "d"]}), path)
    check_unique(path, "families", "id")  # nulls are the schema's business
