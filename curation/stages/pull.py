"""Stage `pull`: read every source into `data/raw/<source>.parquet` with provenance columns.

Each record becomes one contract row (id, prompt, response, source, source_record_id,
source_category, source_license), or a dropped row that says why: a record that cannot
be parsed or breaks the raw schema is quarantined; a repeat of an id already pulled from
the same source is a duplicate.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from curation.core.ledger import StageLedger
from curation.core.schemas import load_schema, validate_rows
from curation.core.tableio import StagedWrites
from curation.core.text import clean_text, content_id
from curation.sources.fields import MISSING, lookup
from curation.sources.inputs import InputFile, input_files
from curation.sources.readers import Problem, Record
from curation.sources.spec import FieldMap, Source, load_sources
from curation.stages.base import Context, StageResult

STAGE = "pull"
_SURROGATE = re.compile("[\ud800-\udfff]")
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
    roots = [paths.root, *(paths.root / root for root in context.params.pull.data_roots)]
    pulled = [pull_source(source, paths.cache, roots, ledger) for source in sources]
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


def pull_source(source: Source, cache: Path, roots: list[Path],
                ledger: StageLedger) -> PulledSource:
    """All records of one source as raw rows; bad records go to `ledger`."""
    rows: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    rows_in = 0
    missing: dict[str, dict[str, int]] = {}
    files = list(input_files(source, cache, roots))
    for file in files:
        is_txt = source.kind != "hub" and source.format_of(file.name) == "txt"
        fields = FieldMap() if is_txt else source.fields
        found: Counter[str] = Counter()  # column -> parsed records where its path leads
        parsed = in_file = 0
        first_problem = None
        for record in tqdm(file.records(), desc=f"pull {source.name}", unit=" rows",
                           disable=None, leave=False):
            in_file += 1
            parsed += record.problem is None
            first_problem = first_problem or record.problem
            row, problem = _contract_row(source, file, fields, record, found)
            if problem is None:
                rows.append(row)
            else:
                problems.append({**row, "field": problem.field, "check": problem.check,
                                 "detail": problem.detail, "record": record.raw})
        rows_in += in_file
        if in_file > 1 and not parsed and first_problem is not None:
            raise source.error("format", f"no record of {file.name} could be read (the first: "
                               f"{first_problem.detail}); is it in the format the source says?")
        if parsed and not found["prompt"]:
            raise source.error("fields.prompt", f"the prompt field '{fields.prompt}' is in no "
                               f"record of {file.name}")
        gaps = {column: parsed - found[column] for column in fields.mapped()
                if parsed - found[column]}
        if gaps:
            missing[file.name] = gaps

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
    valid = valid[~repeated].reset_index(drop=True)
    reused = valid["source_record_id"].duplicated(keep="first")
    if reused.any():
        first = valid[~reused].set_index("source_record_id")["id"]
        dups = valid[reused]
        owner = dups["source_record_id"].map(first)
        ledger.drop(dups, "quarantined", "duplicate_record_id",
                    field=source.fields.record_id or "record_id", duplicate_of=owner,
                    detail="record id " + dups["source_record_id"] + " is also item " + owner)
    pin = _pin(source, files)
    if missing:
        pin["missing_fields"] = missing
    return PulledSource(source, valid[~reused].reset_index(drop=True), rows_in, pin)


def _contract_row(source: Source, file: InputFile, fields: FieldMap, record: Record,
                  found: Counter[str]) -> tuple[dict[str, Any], Problem | None]:
    """One record as a raw row, or the problem that keeps it out."""
    row: dict[str, Any] = {"id": None, "source": source.name,
                           "source_record_id": f"{file.name}:{record.row}"}
    if record.problem is not None:
        return row, record.problem
    looked_up = {column: lookup(record.values or {}, record.header, path)
                 for column, path in fields.mapped().items()}
    found.update(column for column, value in looked_up.items() if value is not MISSING)
    values = {column: None if value is MISSING else value for column, value in looked_up.items()}
    record_id = values.get("record_id")
    if record_id is not None:
        if isinstance(record_id, bool) or not isinstance(record_id, str | int):
            return row, Problem(fields.record_id or "record_id", "bad_record_id",
                                f"record id is {type(record_id).__name__}, not text or a number")
        row["source_record_id"] = str(record_id)
    if looked_up["prompt"] is MISSING:
        return row, Problem(fields.prompt, "missing_field", "record has no prompt field")
    texts = {}
    for column in ("prompt", "response"):
        value = values.get(column)
        if value is not None and not isinstance(value, str):
            return row, Problem(getattr(fields, column), "not_text",
                                f"{column} is {type(value).__name__}, not text")
        texts[column] = value if value else None
    if texts["prompt"] is None or not clean_text(texts["prompt"]):
        return row, Problem(fields.prompt, "empty", "prompt is empty (or only invisible "
                            "and control characters)")
    for column, value in (*texts.items(), ("record_id", row["source_record_id"])):
        if value is not None and _SURROGATE.search(value):
            return row, Problem(getattr(fields, column, None) or column, "utf8",
                                f"{column} holds an unpaired surrogate (not valid Unicode)")
    category = values.get("category")
    if category is not None and not _is_category(category):
        return row, Problem(fields.category or "category", "bad_category",
                            f"category is {type(category).__name__}, not text or a list of text")
    if isinstance(category, list):  # e.g. Do-Not-Answer's intent codes
        category = source.main_category(category)
    if source.category_from_file:
        category = Path(file.name).stem
    elif category in (None, ""):
        category = file.category
    row.update(id=content_id(source.name, texts["prompt"], texts["response"]),
               prompt=texts["prompt"], response=texts["response"],
               source_category=None if category in (None, "") else str(category),
               source_license=source.license)
    return row, None


def _is_category(value: Any) -> bool:
    return isinstance(value, str) or (isinstance(value, list)
                                      and all(isinstance(v, str) for v in value))


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
