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
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

import pyarrow as pa
import yaml

from curation.core.errors import CurationError, first_line
from curation.core.tableio import parquet_file


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
    _refuse_utf16(stream, name, fmt)
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


def _refuse_utf16(stream: BinaryIO, name: str, fmt: str) -> None:
    """UTF-16 (or UTF-32) text would read as garbage with NUL bytes: say so instead."""
    if fmt == "parquet":
        return
    head = stream.read(4096)
    stream.seek(0)
    if head.startswith((b"\xff\xfe", b"\xfe\xff")) or (
            len(head) >= 16 and head.count(b"\x00") > len(head) // 4):
        raise CurationError("looks like UTF-16 or binary, not UTF-8 text; convert it to UTF-8",
                            file=name)


def _json(text: str, **options: Any) -> Any:
    """json.loads, with every way it can fail as a ValueError (too deep, too long a number)."""
    try:
        return json.loads(text, **options)
    except RecursionError:
        raise ValueError("nested too deeply") from None


def _plain(value: Any) -> Any:
    """What JSON cannot hold, as it can: a YAML set as a sorted list (a set's order
    changes between runs), anything else (a date, bytes) as its text."""
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    return str(value)


def _raw(value: Any) -> str:
    """A record as JSON text for the ledger, whatever YAML made of it (dates as keys,
    an alias that refers to itself)."""
    try:
        return json.dumps(value, ensure_ascii=False, default=_plain, allow_nan=False)
    except TypeError:  # a key that is not text (a YAML date, a number)
        return _raw(_text_keys(value))
    except ValueError:  # NaN or an infinity, which strict JSON does not have: as null
        try:
            return json.dumps(_finite(value), ensure_ascii=False, default=_plain,
                              allow_nan=False)
        except (TypeError, ValueError, RecursionError):
            return repr(value)[:100_000]
    except RecursionError:
        return repr(value)[:100_000]


def _finite(value: Any) -> Any:
    """A value with its NaN and infinite numbers as None (a value inside itself ends in
    RecursionError, as in `json.dumps`)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_finite(v) for v in value]
    return value


def _text_keys(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _text_keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_text_keys(v) for v in value]
    return value


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
            value = _json(text)
        except json.JSONDecodeError as exc:
            yield Record(number, None, text, Problem("line", "json", f"malformed JSON: {exc.msg}"))
            continue
        except ValueError as exc:
            yield Record(number, None, text[:100_000], Problem("line", "json",
                                                               f"unreadable JSON: {exc}"))
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
    """Records of a CSV file: blank and comment lines before the header are skipped; a
    record with bytes that are not UTF-8 is quarantined, the rest of the file is read."""
    lines = _decoded_lines(stream)
    for line in lines:
        if line.strip() and not (comment_prefix and line.startswith(comment_prefix)):
            lines = itertools.chain([line], lines)
            break
    reader = csv.reader(lines, strict=True)
    try:
        header = next(reader, None)
        if header is None:
            return
        undecodable = [c for c in header if _UNDECODABLE.search(c)]
        if undecodable:
            shown = undecodable[0].encode("utf-8", "surrogateescape").decode("utf-8", "replace")
            raise CurationError(f"the header's column '{shown}' is not valid UTF-8 (save the "
                                "file as UTF-8)", file=name)
        repeated = sorted({c for c in header if header.count(c) > 1})
        if repeated:
            raise CurationError(f"column '{repeated[0]}' appears twice in the header",
                                file=name, field=repeated[0])
        for number, cells in enumerate(reader, start=1):
            if not any(cell.strip() for cell in cells):
                continue
            if any(_UNDECODABLE.search(cell) for cell in cells):
                raw = json.dumps([c.encode("utf-8", "surrogateescape").decode("utf-8", "replace")
                                  for c in cells], ensure_ascii=False)
                yield Record(number, None, raw, Problem("row", "utf8",
                                                        "record is not valid UTF-8"))
                continue
            raw = json.dumps(cells, ensure_ascii=False)
            if len(cells) != len(header):
                yield Record(number, None, raw, Problem(
                    "row", "field_count", f"{len(cells)} fields, the header has {len(header)}"))
            else:
                yield Record(number, dict(zip(header, cells, strict=True)), raw)
    except csv.Error as exc:
        raise CurationError(f"malformed CSV at line {reader.line_num}: {exc}", file=name) from None


_UNDECODABLE = re.compile("[\udc80-\udcff]")  # bytes that were not UTF-8 (surrogateescape)
csv.field_size_limit(2**31 - 1)  # a 20 MB prompt in a CSV cell is still one record


def _decoded_lines(stream: BinaryIO) -> Iterator[str]:
    """Lines decoded one at a time; bytes that are not UTF-8 survive as lone surrogates, so
    the record holding them can be quarantined."""
    for number, line in enumerate(stream, start=1):
        yield line.decode("utf-8-sig" if number == 1 else "utf-8", "surrogateescape")


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
        hint = "" if records_key else " (set records_key if the records sit under a key)"
        raise CurationError(f"expected a list of records {where}, found {found}{hint}",
                            file=name, field=records_key)
    return data, header


def _records(items: list[Any], header: dict[str, Any] | None, kind: str, name: str,
             too_long: bool) -> Iterator[Record]:
    """The items as records; with `too_long` (the file may hold a `_TooLong` number), an
    item holding one is quarantined, and a header holding one stops the file (every
    record reads it)."""
    if too_long and header is not None and _holds(header, _TooLong):
        raise CurationError("a value beside the records is a number too long to read",
                            file=name)
    for number, value in enumerate(items, start=1):
        raw = _raw(value)
        if too_long and _holds(value, _TooLong):
            yield Record(number, None, raw, Problem("item", "json", "unreadable JSON: a number "
                                                    "too long to read"))
        elif isinstance(value, dict):
            yield Record(number, value, raw, header=header)
        else:
            yield Record(number, None, raw, Problem("item", "not_an_object",
                                                    f"{kind} item is not an object"))


class _TooLong(str):
    """A JSON number past Python's digit limit for reading one (4,300), kept as its start
    so that the record holding it is quarantined rather than the whole file stopped."""


def _holds(value: Any, kind: type) -> bool:
    """Whether a value, or anything nested in it, is of `kind` (without recursion: a
    record may be nested deeper than Python's stack)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, kind):
            return True
        if isinstance(item, dict):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return False


def _json_array(stream: BinaryIO, name: str, records_key: str | None) -> Iterator[Record]:
    too_long = False

    def number(text: str) -> int | str:
        nonlocal too_long
        try:
            return int(text)
        except ValueError:
            too_long = True
            return _TooLong(text[:20] + "...")

    def load(text: str) -> Any:
        try:
            return _json(text, parse_int=number)
        except json.JSONDecodeError as exc:
            raise CurationError(f"malformed JSON at line {exc.lineno}, column {exc.colno}: "
                                f"{exc.msg}", file=name) from None
        except ValueError as exc:
            raise CurationError(f"unreadable JSON: {exc}", file=name) from None

    items, header = _listed(_document(stream, name, load), name, records_key)
    return _records(items, header, "array", name, too_long)


class _DataLoader(yaml.SafeLoader):
    """A SafeLoader without aliases: a data file has no use for them, and nested aliases
    expand exponentially ("billion laughs")."""

    def compose_node(self, parent: yaml.Node | None, index: object) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            raise yaml.composer.ComposerError(None, None, "aliases (*name) are not supported "
                                              "in data files", self.peek_event().start_mark)
        return super().compose_node(parent, index)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int | str:
        """An integer, or `_TooLong` past Python's digit limit (its record is quarantined)."""
        try:
            return super().construct_yaml_int(node)
        except ValueError:
            return _TooLong(str(node.value)[:20] + "...")


_DataLoader.add_constructor("tag:yaml.org,2002:int", _DataLoader.construct_yaml_int)


def _yaml_list(stream: BinaryIO, name: str, records_key: str | None) -> Iterator[Record]:
    """A YAML document holding a list of mappings, at its top or under `records_key`."""
    def load(text: str) -> Any:
        try:
            return yaml.load(text, Loader=_DataLoader)  # noqa: S506 (a SafeLoader)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            raise CurationError(f"invalid YAML: {getattr(exc, 'problem', exc)}", file=name,
                                line=mark.line + 1 if mark else None) from None
        except (ValueError, RecursionError) as exc:
            raise CurationError(f"unreadable YAML: {exc or 'nested too deeply'}",
                                file=name) from None

    items, header = _listed(_document(stream, name, load), name, records_key)
    return _records(items, header, "list", name, too_long=True)  # walking costs less than YAML


def _parquet(stream: BinaryIO, name: str) -> Iterator[Record]:
    try:
        parquet = parquet_file(stream)
        names = parquet.schema_arrow.names
        repeated = sorted({c for c in names if names.count(c) > 1})
        if repeated:
            raise CurationError(f"column '{repeated[0]}' appears twice", file=name,
                                field=repeated[0])
        number = 0
        for batch in parquet.iter_batches(batch_size=10_000):
            for values in batch.to_pylist():
                number += 1
                yield Record(number, values, _raw(values))
    except (OSError, ValueError, OverflowError, pa.ArrowException) as exc:
        # not parquet, a corrupt page, or a value Python cannot hold (a timestamp past 9999)
        raise CurationError(f"not a readable parquet file: {first_line(exc)}",
                            file=name) from None
