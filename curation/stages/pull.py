"""Stage `pull`: read every source into `data/raw/<source>.parquet` with provenance columns.

Each record becomes one contract row (id, prompt, response, source, source_record_id,
source_category, source_license), or a dropped row that says why: a record that cannot
be parsed or breaks the raw schema is quarantined; a repeat of an id already pulled from
the same source is a duplicate.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from curation.core.errors import CurationError
from curation.core.ledger import StageLedger
from curation.core.schemas import load_schema, validate_rows
from curation.core.tableio import StagedWrites
from curation.core.text import content_id
from curation.sources.inputs import InputFile, input_files
from curation.sources.readers import Problem, Record
from curation.sources.spec import FieldMap, Source, load_sources
from curation.stages.base import Context, StageResult

STAGE = "pull"
RAW_COLUMNS = ["id", "prompt", "response", "source", "source_record_id", "source_category",
               "source_license"]


@dataclass
class PulledSource:
    source: Source
    rows: pd.DataFrame
    rows_in: int
    pin: dict[str, Any]


def run(context: Context) -> StageResult:
    """Pull every source, then write all outputs at once."""
    paths = context.paths
    ledger = StageLedger(STAGE)
    sources = load_sources(context.sources_folder, context.taxonomy.domain_ids)
    pulled = [pull_source(source, paths.cache, ledger) for source in sources]
    rows_in = Counter({p.source.name: p.rows_in for p in pulled})
    kept = Counter({p.source.name: len(p.rows) for p in pulled})
    summary = ledger.summary(rows_in, kept)
    pins = {p.source.name: p.pin for p in pulled}
    with StagedWrites() as out:
        for p in pulled:
            out.parquet(p.rows, paths.raw_dir / f"{p.source.name}.parquet")
        ledger.write(out, paths, summary)
        out.json(pins, paths.report("sources"))
    current = {f"{p.source.name}.parquet" for p in pulled}
    for stale in paths.raw_dir.glob("*.parquet"):
        if stale.name not in current:
            stale.unlink()
    lines = [f"{source}: {counts['kept']} rows ({counts['dropped']} dropped)"
             for source, counts in summary["by_source"].items()]
    return StageResult(STAGE, summary, pins, lines)


def pull_source(source: Source, cache: Path, ledger: StageLedger) -> PulledSource:
    """All records of one source as raw rows; bad records go to `ledger`."""
    rows: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    rows_in = 0
    files = list(input_files(source, cache))
    for file in files:
        is_txt = source.kind != "hub" and source.format_of(file.name) == "txt"
        fields = FieldMap() if is_txt else source.fields
        seen: Counter[str] = Counter()
        records_in_file = 0
        for record in tqdm(file.records(), desc=f"pull {source.name}", unit=" rows",
                           disable=None, leave=False):
            records_in_file += 1
            row, problem = _contract_row(source, file, fields, record, seen)
            if problem is None:
                rows.append(row)
            else:
                problems.append({**row, "field": problem.field, "check": problem.check,
                                 "detail": problem.detail, "record": record.raw})
        _check_fields_present(source, file, fields, seen, records_in_file)
        rows_in += records_in_file

    table = pd.DataFrame(rows, columns=RAW_COLUMNS).astype("str")
    if problems:
        bad = pd.DataFrame(problems)
        ledger.drop(bad, "quarantined", bad["check"], field=bad["field"], detail=bad["detail"])
    valid, failures = validate_rows(table, load_schema("raw"))
    if not failures.empty:
        broken = table.iloc[failures["index"]]
        ledger.drop(broken, "quarantined", failures["check"], field=failures["field"],
                    detail=failures["detail"])
    repeated = valid["id"].duplicated(keep="first")
    if repeated.any():
        first = valid[~repeated].set_index("id")["source_record_id"]
        dups = valid[repeated]
        ledger.drop(dups, "duplicate", "same_content_in_source", duplicate_of=dups["id"],
                    detail="same cleaned text as " + dups["id"].map(first))
    return PulledSource(source, valid[~repeated].reset_index(drop=True), rows_in,
                        _pin(source, files))


def _contract_row(source: Source, file: InputFile, fields: FieldMap, record: Record,
                  seen: Counter[str]) -> tuple[dict[str, Any], Problem | None]:
    """One record as a raw row, or the problem that keeps it out."""
    row: dict[str, Any] = {"id": None, "source": source.name,
                           "source_record_id": f"{file.name}:{record.row}"}
    if record.problem is not None:
        return row, record.problem
    values = record.values or {}
    seen.update(k for k in (fields.prompt, fields.response, fields.category, fields.record_id)
                if k is not None and k in values)
    if fields.record_id is not None and values.get(fields.record_id) is not None:
        row["source_record_id"] = str(values[fields.record_id])
    if fields.prompt not in values:
        return row, Problem(fields.prompt, "missing_field", "record has no prompt field")
    texts = {}
    for column, key in (("prompt", fields.prompt), ("response", fields.response)):
        value = values.get(key) if key is not None else None
        if value is not None and not isinstance(value, str):
            return row, Problem(key, "not_text", f"{column} is {type(value).__name__}, not text")
        texts[column] = value if value else None
    if texts["prompt"] is None or not texts["prompt"].strip():
        return row, Problem(fields.prompt, "empty", "prompt is empty")
    category = Path(file.name).stem if source.category_from_file else (
        values.get(fields.category) if fields.category is not None else None)
    if isinstance(category, list):  # e.g. Do-Not-Answer's intent codes
        category = source.main_category(category)
    row.update(id=content_id(source.name, texts["prompt"], texts["response"]),
               prompt=texts["prompt"], response=texts["response"],
               source_category=None if category in (None, "") else str(category),
               source_license=source.license)
    return row, None


def _check_fields_present(source: Source, file: InputFile, fields: FieldMap,
                          seen: Counter[str], rows_in: int) -> None:
    """A mapped field that no record of a file has is a wrong field map, not bad rows."""
    if rows_in == 0:
        return
    for role in ("prompt", "response", "category", "record_id"):
        key = getattr(fields, role)
        if key is not None and seen[key] == 0 and not (role == "category"
                                                       and source.category_from_file):
            raise CurationError(f"the field map's {role} field '{key}' is in no record of "
                                f"{file.name}", file=source.config_path, field=f"fields.{role}")


def _pin(source: Source, files: list[InputFile]) -> dict[str, Any]:
    """What exactly was pulled: enough to cite it and to tell when it changed."""
    pin: dict[str, Any] = {"kind": source.kind, "license": source.license,
                           "citation": source.citation, "homepage": source.homepage,
                           "description": source.description}
    if source.artifact is not None:
        pin["artifact"] = source.artifact.model_dump()
    if source.hub is not None:
        pin["hub"] = source.hub.model_dump(exclude_none=True)
    pin["files"] = {f.name: f.fingerprint for f in files}
    return pin
