"""Every reader on byte-order marks, CRLF, empty files, documents with a header, and random
input: never a traceback, every record accounted for."""

from __future__ import annotations

import io
import json
import subprocess
import sys

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from curation.core.errors import CurationError
from curation.sources.readers import read_records

BOM = b"\xef\xbb\xbf"
FORMATS = ("jsonl", "txt", "csv", "json", "yaml", "parquet", "psychosafe")


def records(data: bytes, fmt: str, **options: str | None) -> list:
    return list(read_records(io.BytesIO(data), fmt, f"x.{fmt}", **options))


@pytest.mark.parametrize("fmt, data", [
    ("jsonl", b'{"prompt": "first"}\r\n{"prompt": "second"}\r\n'),
    ("txt", b"first\r\nsecond\r\n"),
    ("csv", b"prompt,other\r\nfirst,1\r\nsecond,2\r\n"),
    ("json", b'[{"prompt": "first"},\r\n {"prompt": "second"}]'),
    ("yaml", b"- prompt: first\r\n- prompt: second\r\n"),
])
def test_a_bom_and_crlf_change_nothing(fmt: str, data: bytes) -> None:
    for variant in (data, BOM + data):
        found = records(variant, fmt)
        assert [r.values["prompt"] for r in found] == ["first", "second"], variant
        assert all(r.problem is None for r in found)


def test_a_bom_before_a_csv_comment_line_still_skips_it() -> None:
    data = BOM + b"# dataset_version=1.0\nprompt\nfirst\n"
    assert [r.values for r in records(data, "csv", comment_prefix="#")] == [{"prompt": "first"}]


@pytest.mark.parametrize("fmt", ["jsonl", "txt", "csv", "json", "yaml", "psychosafe"])
@pytest.mark.parametrize("data", [b"", BOM, b"\n\n", b"  \r\n"])
def test_an_empty_file_has_no_records(fmt: str, data: bytes) -> None:
    assert records(data, fmt) == []


def test_records_under_a_key_carry_the_file_header() -> None:
    data = b"dataset_name: crisis\nharm_categories: [self-harm]\nseeds:\n- value: hi there\n"
    found = records(data, "yaml", records_key="seeds")
    assert found[0].values == {"value": "hi there"}
    assert found[0].header == {"dataset_name": "crisis", "harm_categories": ["self-harm"]}
    found = records(b'{"meta": 1, "items": [{"prompt": "p"}]}', "json", records_key="items")
    assert found[0].header == {"meta": 1}


@pytest.mark.parametrize("fmt, data, message", [
    ("json", b'[{"prompt": "unclosed"', "malformed JSON at line 1, column 23"),
    ("json", b'{"prompt": "an object"}', "expected a list of records at the top, found dict"),
    ("yaml", b"prompt: a mapping\n", "expected a list of records at the top, found dict"),
    ("yaml", b"- [unclosed\n", "invalid YAML"),
    ("csv", b'prompt\n"unclosed\n', "malformed CSV at line 2"),
    ("csv", b"prompt,other,prompt\na,b,c\n", "column 'prompt' appears twice in the header"),
    ("csv", b"pr\xe9mpt,other\na,b\n", "the header's column 'pr\ufffdmpt' is not valid UTF-8"),
    ("txt", "first prompt\nsecond\n".encode("utf-16"), "looks like UTF-16 or binary"),
    ("jsonl", "{}\n".encode("utf-16-le") * 10, "looks like UTF-16 or binary"),
    ("yaml", b"- &a {prompt: loop, self: *a}\n", "aliases (*name) are not supported"),
    ("parquet", b"PAR1 not really", "not a readable parquet file"),
    ("json", b"[" * 100_000 + b"]" * 100_000, "unreadable JSON: nested too deeply"),
])
def test_an_unreadable_file_is_one_error_naming_it(fmt: str, data: bytes, message: str) -> None:
    with pytest.raises(CurationError) as caught:
        records(data, fmt)
    assert str(caught.value).startswith(f"x.{fmt}") and message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("fmt, data", [
    ("json", b'{"v": ' + b"9" * 5000 + b', "items": [{"prompt": "a"}]}'),
    ("yaml", b"v: " + b"9" * 5000 + b"\nitems:\n- prompt: a\n")])
def test_a_number_too_long_to_read_beside_the_records_stops_the_file(fmt: str, data: bytes
                                                                      ) -> None:
    """Every record reads the header (`/v`): it cannot be quarantined with one of them."""
    with pytest.raises(CurationError, match="a value beside the records is a number too long"):
        records(data, fmt, records_key="items")


def non_blank_lines(data: bytes) -> list[int]:
    """Numbers of the lines (split at LF, CR LF stripped, a BOM ignored) holding anything
    but white space; a line that is not UTF-8 counts, to be quarantined."""
    numbers = []
    for number, line in enumerate(data.removeprefix(BOM).split(b"\n"), start=1):
        try:
            blank = not line.rstrip(b"\r").decode("utf-8").strip()
        except UnicodeDecodeError:
            blank = False
        if not blank:
            numbers.append(number)
    return numbers


@settings(max_examples=150, deadline=None)
@given(st.binary(max_size=400), st.sampled_from(FORMATS))
def test_random_bytes_never_escape_as_a_traceback(data: bytes, fmt: str) -> None:
    try:
        found = records(data, fmt)
    except CurationError:
        return
    if fmt in ("jsonl", "txt"):  # line formats: every non-blank line is one record
        assert [r.row for r in found] == non_blank_lines(data)
    for record in found:
        assert (record.values is None) == (record.problem is not None)


JSON = st.recursive(st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False)
                    | st.text(max_size=20),
                    lambda inner: st.lists(inner, max_size=4)
                    | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=25)


@settings(max_examples=150, deadline=None)
@given(JSON, st.sampled_from(["json", "yaml", "jsonl"]))
def test_random_structures_are_records_problems_or_one_error(value: object, fmt: str) -> None:
    if fmt == "json":
        data = json.dumps(value).encode()
    elif fmt == "yaml":
        data = yaml.safe_dump(value, allow_unicode=True).encode()
        # PyYAML itself folds some characters (U+0085 in a quoted key reads back as a space)
        assume(yaml.safe_load(data) == value)
    else:
        data = "".join(json.dumps(v) + "\n" for v in (value if isinstance(value, list)
                                                      else [value])).encode()
    try:
        found = records(data, fmt)
    except CurationError as error:
        assert fmt != "jsonl" and not isinstance(value, list), error
        return
    if isinstance(value, list):  # one record (or one problem) per item, in order
        assert len(found) == len(value)
        for record, item in zip(found, value, strict=True):
            assert record.values == item if isinstance(item, dict) else record.problem


def test_bad_records_in_a_sound_file_are_problems_not_errors() -> None:
    data = (b'{"prompt": "fine"}\n{"prompt": "' + b"9" * 10 + b'", "n": ' + b"9" * 5000
            + b'}\n{"x": ' + b"[" * 50_000 + b"]" * 50_000 + b'}\n{"prompt": "bad \\ud800"}\n')
    found = records(data, "jsonl")
    assert [r.problem.check if r.problem else "ok" for r in found] == ["ok", "json", "json", "ok"]
    csv_found = records(b"prompt\nfine\ncaf\xe9 latte\nalso fine\n", "csv")
    assert [r.problem.check if r.problem else "ok" for r in csv_found] == ["ok", "utf8", "ok"]
    big = records(b"prompt\n" + b"x" * 300_000 + b"\n", "csv")
    assert len(big[0].values["prompt"]) == 300_000
    long = b"9" * 5000
    for fmt, data in [("json", b'[{"prompt": "a"}, {"prompt": "b", "n": [' + long + b']}]'),
                      ("yaml", b"- prompt: a\n- prompt: b\n  n: [" + long + b"]\n")]:
        assert [r.problem.check if r.problem else "ok" for r in records(data, fmt)] == [
            "ok", "json"]


def test_a_record_is_kept_in_the_ledger_as_strict_json() -> None:
    """A parquet record's NaN and infinities are null, as strict JSON has them (a JSONL
    record is kept as the line it was)."""
    table = pa.table({"prompt": [5.0], "more": [[float("inf"), float("nan")]]})
    buffer = io.BytesIO()
    pq.write_table(table, buffer)
    assert records(buffer.getvalue(), "parquet")[0].raw == '{"prompt": 5.0, "more": [null, null]}'
    line = b'{"prompt": 5, "score": NaN}'
    assert records(line + b"\n", "jsonl")[0].raw == line.decode()


def test_blank_lines_before_a_csv_header_and_dates_as_yaml_keys() -> None:
    assert [r.values for r in records(b"\n\nprompt\nfirst\n", "csv")] == [{"prompt": "first"}]
    found = records(b"- prompt: other\n  2024-01-01: x\n", "yaml")
    assert found[0].values["prompt"] == "other" and "2024-01-01" in found[0].raw


def test_a_yaml_set_is_recorded_in_one_order() -> None:
    """A set's iteration order changes between interpreters (string hashes are salted):
    the ledger's copy of the record is sorted, so the dropped table keeps its bytes."""
    code = ("import io; from curation.sources.readers import read_records; "
            "print(next(iter(read_records(io.BytesIO(b'- prompt: !!set {alpha, beta, gamma, "
            "delta, epsilon}'), 'yaml', 'x.yaml'))).raw)")
    seen = {subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True).stdout for _ in range(4)}
    assert seen == {'{"prompt": ["alpha", "beta", "delta", "epsilon", "gamma"]}\n'}
