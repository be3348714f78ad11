"""Table contracts: pandera schemas stored as YAML in `schemas/`, applied row by row.

A row that breaks a check is quarantined with the failed check and field; a table that
breaks a column-level rule (a missing column, a wrong type) is a bug, and raises.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa

from curation.core.errors import CurationError

SCHEMA_DIR = Path("schemas")


@cache
def load_schema(name: str, directory: str = str(SCHEMA_DIR)) -> pa.DataFrameSchema:
    path = Path(directory) / f"{name}.yaml"
    try:
        return pa.DataFrameSchema.from_yaml(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CurationError("schema file not found", file=str(path)) from None


def validate_rows(frame: pd.DataFrame, schema: pa.DataFrameSchema
                  ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Split a table into rows that pass the schema and the failures of the others.

    The failures table has one row per failing input row: its position (`index`), the
    first failed `field` and `check`, and every failure of that row in `detail`.
    """
    frame = frame.reset_index(drop=True)
    failures = pd.DataFrame(columns=["index", "field", "check", "detail"])
    if frame.empty:  # no row to break it (empty columns read back with any dtype)
        return frame, failures
    try:
        schema.validate(frame, lazy=True)
    except pa.errors.SchemaErrors as errors:
        cases = errors.failure_cases
        table_level = cases[cases["index"].isna()]
        if not table_level.empty:
            first = table_level.iloc[0]
            raise CurationError(f"table breaks its contract: {first['check']} "
                                f"({first['failure_case']})", file=f"schemas/{schema.name}.yaml",
                                field=str(first["column"])) from None
        cases = cases.assign(index=cases["index"].astype(int)).sort_values(
            ["index", "column"], kind="stable")
        failures = (cases.groupby("index", sort=True)
                    .agg(field=("column", "first"), check=("check", "first"),
                         detail=("check", lambda c: "; ".join(
                             f"{col}: {chk}" for col, chk in zip(
                                 cases.loc[c.index, "column"], c, strict=True))))
                    .reset_index())
    keep = np.ones(len(frame), dtype=bool)
    keep[failures["index"].to_numpy(dtype=int)] = False
    return frame.loc[keep].reset_index(drop=True), failures

