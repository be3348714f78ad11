"""`validate_rows` on a table with no rows: an empty input of the right columns is a
stage with nothing to do, not a broken contract (its empty columns read back with any
dtype)."""

from __future__ import annotations

import pandas as pd

from curation.core.schemas import load_schema, validate_rows


def test_an_empty_table_has_no_row_to_break_the_contract() -> None:
    schema = load_schema("redacted")
    frame = pd.DataFrame({c: pd.Series(dtype="float64") for c in schema.columns})
    valid, failures = validate_rows(frame, schema)
    assert valid.empty and failures.empty
