"""Staged writes are all or nothing: a failing stage leaves no file and no folder it made."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from curation.core.tableio import StagedWrites


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
