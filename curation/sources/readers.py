"""Readers: one per file format, each turning a byte stream into numbered records.

A record that cannot be parsed comes back with a `problem` (quarantined by the caller) when
the rest of the file can still be read; a file that cannot be read at all raises.
`row` is the 1-based line number for line formats (jsonl, txt) and the 1-based record
number otherwise (csv data rows, json array and yaml list items, parquet rows).
Every reader accepts a leading UTF-8 byte-order mark and CRLF line ends; a file with no
content at all has no records. A json or yaml document that holds its records under
`records_key` passes its other top-level values along as the records' `header`.
"""

from __future__ import annotations

import csv
import itertools
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import pyarrow as pa
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
    header: dict[str, Any] | None = None  # the file's top-level values beside its records


_BOM = b"\xef\xbb\xbf"


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
        return _json_array(stream, name, records_key)
    if fmt == "yaml":
        return _yaml_list(stream, name, records_key)
    if fmt == "parquet":
        return _parquet(stream, name)
    raise CurationError(f"no reader for format '{fmt}'", file=name, field="format")


def _lines(stream: BinaryIO) -> Iterator[tuple[int, str | None, bytes]]:
    """Non-blank lines, decoded, with their numbers; None where the bytes are not UTF-8."""
    for number, line in enumerate(stream, start=1):
        line = line.rstrip(b"\r\n")
        if number == 1:
            line = line.removeprefix(_BOM)
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
            yield line.decode("utf-8-sig" if number == 1 else "utf-8")
        except UnicodeDecodeError as exc:
            raise CurationError(f"not valid UTF-8 at line {number}, byte {exc.start}",
                                file=name) from None


def _document(stream: BinaryIO, name: str, load: Any) -> Any:
    """A whole-file document (json or yaml); None for a file with no content."""
    data = stream.read()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise CurationError(f"not valid UTF-8 at byte {exc.start}", file=name) from None
    return load(text) if text.strip() else None


def _listed(data: Any, name: str, records_key: str | None
            ) -> tuple[list[Any], dict[str, Any] | None]:
    """The records of a document (a list, or a list under `records_key`) and its header."""
    if data is None:
        return [], None
    header = None
    if records_key is not None:
        if not isinstance(data, dict) or records_key not in data:
            raise CurationError(f"expected a mapping with a '{records_key}' list", file=name,
                                field=records_key)
        header = {k: v for k, v in data.items() if k != records_key}
        data = data[records_key]
    if not isinstance(data, list):
        where = f"under '{records_key}'" if records_key else "at the top"
        found = type(data).__name__
        raise CurationError(f"expected a list of records {where}, found {found} "
                            f"(set records_key if the records sit under a key)", file=name,
                            field=records_key)
    return data, header


def _records(items: list[Any], header: dict[str, Any] | None, kind: str) -> Iterator[Record]:
    for number, value in enumerate(items, start=1):
        raw = json.dumps(value, ensure_ascii=False, default=str)
        if isinstance(value, dict):
            yield Record(number, value, raw, header=header)
        else:
            yield Record(number, None, raw, Problem("item", "not_an_object",
                                                    f"{kind} item is not an object"))


def _json_array(stream: BinaryIO, name: str, records_key: str | None) -> Iterator[Record]:
    def load(text: str) -> Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError as exc:
            raise CurationError(f"malformed JSON at line {exc.lineno}, column {exc.colno}: "
                                f"{exc.msg}", file=name) from None
        except RecursionError:
            raise CurationError("JSON nested too deeply", file=name) from None

    items, header = _listed(_document(stream, name, load), name, records_key)
    return _records(items, header, "array")


def _yaml_list(stream: BinaryIO, name: str, records_key: str | None) -> Iterator[Record]:
    """A YAML document holding a list of mappings, at its top or under `records_key`."""
    def load(text: str) -> Any:
        try:
            return yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise CurationError(f"invalid YAML: {getattr(exc, 'problem', exc)}", file=name,
                                row=mark.line + 1 if mark else None) from None
        except RecursionError:
            raise CurationError("YAML nested too deeply", file=name) from None

    items, header = _listed(_document(stream, name, load), name, records_key)
    return _records(items, header, "list")


def _parquet(stream: BinaryIO, name: str) -> Iterator[Record]:
    try:
        parquet = pq.ParquetFile(stream)
        number = 0
        for batch in parquet.iter_batches(batch_size=10_000):
            for values in batch.to_pylist():
                number += 1
                yield Record(number, values, json.dumps(values, ensure_ascii=False, default=str))
    except (OSError, ValueError, pa.ArrowException) as exc:  # not parquet, or a corrupt page
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CurationError(f"not a readable parquet file: {message}", file=name) from None
