"""A ledger that spills its dropped rows to disk writes and counts what one that holds
them writes and counts."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest

from curation.core import ledger as ledger_module
from curation.core.ledger import StageLedger
from curation.core.paths import Paths
from curation.core.tableio import StagedWrites


def rows(start: int, n: int, source: str) -> pd.DataFrame:
    return pd.DataFrame({"id": [f"{i:016x}" for i in range(start, start + n)],
                         "source": source, "source_record_id": [str(i) for i in range(n)],
                         "prompt": [f"prompt {i}" for i in range(start, start + n)]})


def build(root: Path) -> tuple[dict, pd.DataFrame]:
    ledger = StageLedger("dedup")
    for batch in range(7):
        ledger.drop(rows(batch * 10, 10, f"s{batch % 2}"), "duplicate",
                    "exact_duplicate" if batch % 3 else "near_duplicate",
                    duplicate_of="0000000000000000", detail=f"batch {batch}")
    ledger.drop(rows(500, 3, "s2"), "quarantined", pd.Series(["a", "b", "a"]), field="prompt")
    summary = ledger.summary(Counter({"s0": 50, "s1": 40, "s2": 5}),
                             Counter({"s0": 10, "s1": 10, "s2": 2}))
    with StagedWrites() as out:
        ledger.write(out, Paths(root), summary)
    return summary, pq.read_table(Paths(root).dropped("dedup")).to_pandas()


def test_spilling_changes_neither_the_rows_nor_the_counts(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    held, held_rows = build(tmp_path / "held")
    monkeypatch.setattr(ledger_module, "_HELD_ROWS", 15)
    spilled, spilled_rows = build(tmp_path / "spilled")
    assert spilled == held
    assert held["duplicate"] == {"exact_duplicate": 40, "near_duplicate": 30}
    assert held["quarantined"] == {"a": 2, "b": 1}
    assert held["by_source"]["s2"] == {"rows_in": 5, "kept": 2, "dropped": 3}
    pd.testing.assert_frame_equal(spilled_rows, held_rows)
    assert len(held_rows) == 73 and held_rows["id"].is_unique
    assert pq.ParquetFile(Paths(tmp_path / "spilled").dropped("dedup")).num_row_groups > 1


def test_a_dropped_rows_record_is_strict_json(tmp_path: Path) -> None:
    """pandas' missing values become null: a bare NaN is not JSON, and strict parsers (and
    other languages) reject it."""
    table = rows(0, 2, "s").assign(contrast_of=[None, "00000000000000aa"],
                                   language_prob=[float("nan"), 0.5])
    ledger = StageLedger("dedup")
    ledger.drop(table, "duplicate", "exact_duplicate", duplicate_of="0000000000000000")
    with StagedWrites() as out:
        ledger.write(out, Paths(tmp_path), ledger.summary(Counter({"s": 3}), Counter({"s": 1})))
    records = pq.read_table(Paths(tmp_path).dropped("dedup"))["record"].to_pylist()

    def refuse(constant: str) -> None:
        raise ValueError(constant)

    parsed = [json.loads(r, parse_constant=refuse) for r in records]
    assert [(p["contrast_of"], p["language_prob"]) for p in parsed] == [
        (None, None), ("00000000000000aa", 0.5)]
