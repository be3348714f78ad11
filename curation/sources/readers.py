"""Readers: one per file format, each turning a byte stream into numbered records.

A record that cannot be parsed comes back with a `problem` (quarantined by the caller) when
the rest of the file can still be read; a file that cannot be read at all raises.
`row` is the 1-based line number for line formats (jsonl, txt) and the 1-based record
number otherwise (csv data rows, json array and yaml list items, parquet rows).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import pyarrow.parquet as pq
import yaml

from curation.core.errors import CurationError


@dataclass(frozen=True)
class Problem:
    field: str
    check: str
    detail: str


@dataclass(frozen=True)
class Record:
    row: int
    values: dict[str, Any] | None
    raw: str
    problem: Problem | None = None


def read_records(stream: BinaryIO, fmt: str, name: str, comment_prefix: str | None = None,
                 records_key: str | None = None) -> Iterator[Record]:
    """Records of one file; `name` is how errors name the file."""
    if fmt == "jsonl":
        return _jsonl(stream)
    if fmt == "txt":
        return _txt(stream)
    if fmt == "csv":
        return _csv(stream, name, comment_prefix)
    if fmt in ("json", "psychosafe"):
        return _json_array(stream, name)
    if fmt == "yaml":
        return _yaml_list(stream, name, records_key)
    if fmt == "parquet":
        return _parquet(stream, name)
    raise CurationError(f"no reader for format '{fmt}'", file=name, field="format")


def _lines(stream: BinaryIO) -> Iterator[tuple[int, str | None, bytes]]:
    """Non-blank lines, decoded, with their numbers; None where the bytes are not UTF-8."""
    for number, line in enumerate(stream, start=1):
        line = line.rstrip(b"\r\n")
        try:
            text = line.decode("utf-8")
        except UnicodeDecodeError:
            yield number, None, line
            continue
        if text.strip():
            yield number, text, line


def _bad_utf8(number: int, line: bytes, field: str) -> Record:
    return Record(number, None, line.decode("utf-8", "replace"),
                  Problem(field, "utf8", "line is not valid UTF-8"))


def _jsonl(stream: BinaryIO) -> Iterator[Record]:
    for number, text, line in _lines(stream):
        if text is None:
            yield _bad_utf8(number, line, "line")
            continue
        try:
            value = json.loads(text)
        except json.JSONDecodeError as exc:
            yield Record(number, None, text, Problem("line", "json", f"malformed JSON: {exc.msg}"))
            continue
        if not isinstance(value, dict):
            yield Record(number, None, text, Problem("line", "not_an_object",
                                                     "line is JSON but not an object"))
            continue
        yield Record(number, value, text)


def _txt(stream: BinaryIO) -> Iterator[Record]:
    for number, text, line in _lines(stream):
        if text is None:
            yield _bad_utf8(number, line, "prompt")
        else:
            yield Record(number, {"prompt": text}, text)


def _csv(stream: BinaryIO, name: str, comment_prefix: str | None) -> Iterator[Record]:
    lines = _decoded_lines(stream, name)
    if comment_prefix:
        for line in lines:
            if not line.startswith(comment_prefix):
                lines = itertools.chain([line], lines)
                break
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            return
        for number, cells in enumerate(reader, start=1):
            if not any(cell.strip() for cell in cells):
                continue
            raw = json.dumps(cells, ensure_ascii=False)
            if len(cells) != len(header):
                yield Record(number, None, raw, Problem(
                    "row", "field_count", f"{len(cells)} fields, the header has {len(header)}"))
            else:
                yield Record(number, dict(zip(header, cells, strict=True)), raw)
    except csv.Error as exc:
        raise CurationError(f"malformed CSV: {exc}", file=name) from None


def _decoded_lines(stream: BinaryIO, name: str) -> Iterator[str]:
    """Lines decoded one at a time, so a bad byte is reported with its line number."""
    for number, line in enumerate(stream, start=1):
        try:
            yield line.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise CurationError(f"not valid UTF-8 at line {number}, byte {exc.start}",
                                file=name) from None


def _json_array(stream: BinaryIO, name: str) -> Iterator[Record]:
    try:
        data = json.load(io.TextIOWrapper(stream, encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise CurationError(f"not valid UTF-8 at byte {exc.start}", file=name) from None
    except json.JSONDecodeError as exc:
        raise CurationError(f"malformed JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}",
                            file=name) from None
    if not isinstance(data, list):
        raise CurationError("expected a JSON array of objects", file=name)
    for number, value in enumerate(data, start=1):
        raw = json.dumps(value, ensure_ascii=False)
        if isinstance(value, dict):
            yield Record(number, value, raw)
        else:
            yield Record(number, None, raw, Problem("item", "not_an_object",
                                                    "array item is not an object"))


def _yaml_list(stream: BinaryIO, name: str, records_key: str | None) -> Iterator[Record]:
    """A YAML document holding a list of mappings, at its top or under `records_key`."""
    try:
        data = yaml.safe_load(io.TextIOWrapper(stream, encoding="utf-8"))
    except UnicodeDecodeError as exc:
        raise CurationError(f"not valid UTF-8 at byte {exc.start}", file=name) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise CurationError(f"invalid YAML: {getattr(exc, 'problem', exc)}", file=name,
                            row=mark.line + 1 if mark else None) from None
    if records_key is not None:
        data = data.get(records_key) if isinstance(data, dict) else None
    if not isinstance(data, list):
        where = f"under '{records_key}'" if records_key else "at the top"
        raise CurationError(f"expected a list of records {where}", file=name,
                            field=records_key)
    for number, value in enumerate(data, start=1):
        raw = json.dumps(value, ensure_ascii=False, default=str)
        if isinstance(value, dict):
            yield Record(number, value, raw)
        else:
            yield Record(number, None, raw, Problem("item", "not_an_object",
                                                    "list item is not a mapping"))


def _parquet(stream: BinaryIO, name: str) -> Iterator[Record]:
    try:
        parquet = pq.ParquetFile(stream)
    except Exception as exc:  # pyarrow raises several types for a file that is not parquet
        raise CurationError(f"not a readable parquet file: {exc}", file=name) from None
    number = 0
    for batch in parquet.iter_batches(batch_size=10_000):
        for values in batch.to_pylist():
            number += 1
            yield Record(number, values, json.dumps(values, ensure_ascii=False, default=str))
