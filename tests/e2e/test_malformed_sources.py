"""A malformed-input fixture set through the real `curate pull` (and `normalize`): each
file either stops the stage with one line naming file, row or line and field (exit 1, no
traceback, no partial output), or has its bad records quarantined with a reason while the
ledger adds up."""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from conftest import curate, set_params, write, write_source

BOM = b"\xef\xbb\xbf"
GOOD = {"prompt": "How do I keep myself safe tonight when I feel like this?"}


def jsonl(*rows: object) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in rows)


# name: (files, source body, expected): expected is ("error", pattern) or ("ok", kept,
# {reason: count} of quarantined rows)
CASES: dict[str, tuple[dict[str, bytes], str, tuple]] = {
    "bad utf-8 on a jsonl line": (
        {"x.jsonl": jsonl(GOOD) + b'{"prompt": "caf\xe9"}\n'}, "", ("ok", 1, {"utf8": 1})),
    "bad utf-8 in a csv": (
        {"x.csv": b"prompt\nfine prompt here\ncaf\xe9 prompt\n"}, "", ("ok", 1, {"utf8": 1})),
    "broken jsonl lines": (
        {"x.jsonl": jsonl(GOOD) + b'{"prompt": "broken\n[1, 2]\n'}, "",
        ("ok", 1, {"json": 1, "not_an_object": 1})),
    "bom on jsonl, crlf": (
        {"x.jsonl": BOM + jsonl(GOOD).replace(b"\n", b"\r\n") + b'{"prompt": "second one"}'},
        "", ("ok", 2, {})),
    "bom on a csv comment": (
        {"x.csv": BOM + b"# version=1\nprompt\r\nfirst prompt\r\nsecond prompt\r\n"},
        'comment_prefix: "#"\n', ("ok", 2, {})),
    "bom on a csv header": (
        {"x.csv": BOM + b"prompt,score\nfirst prompt,1\n"}, "", ("ok", 1, {})),
    "unclosed json": (
        {"x.json": b'[{"prompt": "one"}, {"prompt": "two"'}, "",
        ("error", r"in/x\.json: malformed JSON at line 1, column \d+: .*")),
    "a number too long to read in a json array": (
        {"x.json": b'[{"prompt": "one fine prompt"}, {"prompt": "x", "n": [' + b"9" * 5000
                   + b']}, {"prompt": "two fine prompts", "n": -12}]'}, "",
        ("ok", 2, {"json": 1})),
    "json object instead of an array": (
        {"x.json": json.dumps(GOOD).encode()}, "",
        ("error", r"in/x\.json: expected a list of records at the top, found dict \(set "
                  r"records_key if the records sit under a key\)")),
    "json object with records under a key": (
        {"x.json": json.dumps({"version": 2, "items": [GOOD]}).encode()},
        "records_key: items\n", ("ok", 1, {})),
    "wrong types": (
        {"x.jsonl": jsonl(GOOD, {"prompt": 42}, {"prompt": "fine text here", "cat": {"a": 1}},
                          {"prompt": "another fine text", "cat": 7},
                          {"prompt": "a third fine text", "uid": [1, 2]},
                          {"prompt": "a fourth fine text", "uid": True},
                          {"prompt": "a fifth fine text", "reply": ["x"]})},
        "fields: {category: cat, record_id: uid, response: reply}\n",
        ("ok", 1, {"not_text": 2, "bad_category": 2, "bad_record_id": 2})),
    "empty files": (
        {"a.jsonl": b"", "b.json": b"", "c.csv": b"", "d.yaml": b"\n", "e.txt": BOM},
        "", ("ok", 0, {})),
    "duplicate record ids": (
        {"x.jsonl": jsonl({"prompt": "first text here", "uid": "r1"},
                          {"prompt": "other text here", "uid": "r1"},
                          {"prompt": "third text here", "uid": 7},
                          {"prompt": "first text here", "uid": "r1"})},
        "fields: {record_id: uid}\n", ("ok", 2, {"duplicate_record_id": 1})),
    "prompt field in no record": (
        {"x.jsonl": jsonl({"text": "a prompt under another key"})}, "",
        ("error", r"sources/s\.yaml: field 'fields\.prompt': the prompt field "
                  r"'prompt' is in no record of in/x\.jsonl")),
}


@pytest.mark.parametrize("case", list(CASES))
def test_malformed_input(project: Path, case: str) -> None:
    files, body, expected = CASES[case]
    for name, data in files.items():
        write(project / "in" / name, data)
    write_source(project, "s", "kind: file\nfiles: ['in/*']\n" + body)
    result = curate(project, "pull")
    assert "Traceback" not in result.stderr
    if expected[0] == "error":
        lines = result.stderr.strip().splitlines()
        assert result.returncode == 1 and len(lines) == 1, result.stderr
        assert re.fullmatch("error: (" + expected[1] + ")", lines[0]), lines[0]
        assert not (project / "data").exists() and not (project / "reports").exists()
        return
    assert result.returncode == 0, result.stderr
    kept, reasons = expected[1], expected[2]
    rows = pd.read_parquet(project / "data" / "raw" / "s.parquet")
    dropped = pd.read_parquet(project / "data" / "dropped" / "pull.parquet")
    assert len(rows) == kept
    assert Counter(dropped.loc[dropped["outcome"] == "quarantined", "reason"]) == reasons
    report = json.loads((project / "reports" / "ledger" / "pull.json").read_text())
    assert report["rows_in"] == report["kept"] + len(dropped) == kept + len(dropped)


def test_a_repeated_record_id_points_at_the_first(project: Path) -> None:
    write(project / "in" / "x.jsonl", jsonl({"prompt": "first text here", "uid": "r1"},
                                            {"prompt": "other text here", "uid": "r1"}))
    write_source(project, "s", "kind: file\nfiles: [in/x.jsonl]\nfields: {record_id: uid}\n")
    assert curate(project, "pull").returncode == 0
    kept = pd.read_parquet(project / "data" / "raw" / "s.parquet")
    gone = pd.read_parquet(project / "data" / "dropped" / "pull.parquet").iloc[0]
    assert (gone["reason"], gone["field"]) == ("duplicate_record_id", "uid")
    assert gone["duplicate_of"] == kept["id"].iloc[0]


def test_a_20_mb_prompt_is_filtered_for_length_without_language_detection(
        project: Path) -> None:
    big = "word " * 4_000_000
    write(project / "in" / "x.jsonl", jsonl(GOOD, {"prompt": big}))
    write_source(project, "s", "kind: file\nfiles: [in/x.jsonl]\n")
    assert curate(project, "pull").returncode == 0
    result = curate(project, "normalize")
    assert result.returncode == 0, result.stderr
    gone = pd.read_parquet(project / "data" / "dropped" / "normalize.parquet")
    assert gone[["reason", "detail"]].values.tolist() == [["prompt_too_long", "19999999 chars"]]


@pytest.mark.parametrize("path", ["/etc/passwd", "../../../../etc/passwd", "in/../../*"])
def test_paths_outside_the_project_are_refused(project: Path, path: str) -> None:
    write_source(project, "s", f"kind: file\nfiles: ['{path}']\n")
    result = curate(project, "pull")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert re.fullmatch(r"error: sources/s\.yaml, line 5: field 'files\[0\]': '.*' (is outside "
                        r"the project|reaches .*, outside the project); allow its folder in "
                        r"params pull\.data_roots\n", result.stderr), result.stderr
    assert not (project / "data").exists()


def test_a_link_out_of_the_project_is_refused_unless_its_folder_is_allowed(
        project: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    outside = write(elsewhere / "x.txt", "a prompt kept outside the project\n")
    os.symlink(outside, project / "linked.txt")
    write_source(project, "s", "kind: file\nfiles: [linked.txt]\n")
    refused = curate(project, "pull")
    assert refused.returncode == 1 and "outside the project" in refused.stderr
    set_params(project, "pull", data_roots=[str(elsewhere)])
    assert curate(project, "pull").returncode == 0
    write_source(project, "s", f"kind: file\nfiles: ['{outside}']\n")
    assert curate(project, "pull").returncode == 0


def test_a_hub_source_may_not_read_a_folder_outside_the_project(
        project: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    write(elsewhere / "data" / "train.jsonl", '{"prompt": "a prompt kept elsewhere"}\n')
    write_source(project, "s", f"kind: hub\nhub: {{path: '{elsewhere}'}}\n")
    refused = curate(project, "pull")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr == (f"error: sources/s.yaml, line 5: field 'hub.path': '{elsewhere}' "
                              "is outside the project; allow its folder in params "
                              "pull.data_roots\n")
    set_params(project, "pull", data_roots=[str(elsewhere)])
    assert curate(project, "pull").returncode == 0


def test_nested_fields_header_fields_constants_and_files_without_a_field(
        project: Path) -> None:
    write(project / "in" / "a.jsonl", jsonl(
        {"turns": [{"content": "I can't stop thinking about ending it"}],
         "meta": {"cat": "self_harm", "id": 5}},
        {"turns": [{"content": "Where can I get pills without a prescription"}], "meta": {}}))
    write(project / "in" / "b.jsonl", jsonl(
        {"turns": [{"content": "Nobody would notice if I was gone"}]}))
    write(project / "in" / "c.yaml", "harm: violence\nseeds:\n- value: How do I hurt him back\n")
    write_source(project, "nested", """
        kind: file
        files: [in/a.jsonl, {path: in/b.jsonl, category: imminent_crisis}]
        fields: {prompt: "turns[0].content", category: meta.cat, record_id: meta.id}
    """)
    write_source(project, "header", """
        kind: file
        files: [in/c.yaml]
        records_key: seeds
        fields: {prompt: value, category: /harm}
    """)
    result = curate(project, "pull")
    assert result.returncode == 0, result.stderr
    nested = pd.read_parquet(project / "data" / "raw" / "nested.parquet")
    assert nested["prompt"].tolist()[0] == "I can't stop thinking about ending it"
    assert nested["source_category"].fillna("-").tolist() == ["self_harm", "-",
                                                              "imminent_crisis"]
    assert nested["source_record_id"].tolist() == ["5", "in/a.jsonl:2", "in/b.jsonl:1"]
    header = pd.read_parquet(project / "data" / "raw" / "header.parquet")
    assert header["source_category"].tolist() == ["violence"]
    pins = json.loads((project / "reports" / "sources.json").read_text())
    assert pins["nested"]["missing_fields"] == {"in/a.jsonl": {"category": 1, "record_id": 1},
                                                "in/b.jsonl": {"category": 1, "record_id": 1}}


def test_links_folders_pipes_and_glob_characters_in_names(project: Path) -> None:
    write(project / "in" / "a[1].jsonl", jsonl(GOOD))
    (project / "in" / "sub").mkdir()
    os.symlink(".", project / "in" / "loop")
    write_source(project, "s", "kind: file\nfiles: ['in/a[1].jsonl', 'in/**/*.jsonl']\n")
    assert curate(project, "pull").returncode == 0  # named as it is; ** sees it once
    assert len(json.loads((project / "reports" / "sources.json").read_text())["s"]["files"]) == 1
    for name, make, message in [
            ("dangling", lambda p: os.symlink("nowhere.jsonl", p), "cannot read"),
            ("looped", lambda p: os.symlink(p.name, p), "cannot read"),
            ("pipe", os.mkfifo, "is not a regular file")]:
        path = project / "odd" / f"{name}.jsonl"
        path.parent.mkdir(exist_ok=True)
        make(path)
        write_source(project, "s", f"kind: file\nfiles: [odd/{name}.jsonl]\n")
        result = curate(project, "pull")
        assert result.returncode == 1 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1 and "Traceback" not in result.stderr
        path.unlink()
    write_source(project, "s", "kind: file\nfiles: ['in/sub']\n")
    assert "no file matches 'in/sub'" in curate(project, "pull").stderr


def test_invisible_and_invalid_text_is_quarantined(project: Path) -> None:
    write(project / "in" / "x.jsonl", jsonl(GOOD, {"prompt": "\u200b\u2060\x01"}) +
          b'{"prompt": "bad \\ud800 surrogate here"}\n')
    write_source(project, "s", "kind: file\nfiles: [in/x.jsonl]\n")
    assert curate(project, "pull").returncode == 0
    dropped = pd.read_parquet(project / "data" / "dropped" / "pull.parquet")
    assert dropped["reason"].tolist() == ["empty", "utf8"]


def test_an_unpaired_surrogate_in_any_field_quarantines_its_record(project: Path) -> None:
    """Every text that reaches a table is checked, not only the prompt: a category, model,
    family or contrast key, a conversation key, a judgment's text (shown escaped)."""
    bad = "x\ud800"
    rows = [{"prompt": f"A fine prompt number {i}", "response": "A reply.", field: bad}
            for i, field in enumerate(["cat", "model", "fam", "pair", "refused"])]
    write(project / "in" / "x.jsonl", jsonl(GOOD, *rows, {"prompt": "A list category",
                                                          "cat": ["ok", bad]}))
    write_source(project, "s", """kind: file
files: [in/x.jsonl]
fields: {response: response, category: cat, model: model, family: fam, contrast: pair}
judgments: {is_refusal: refused}
""")
    write(project / "in" / "t.jsonl", jsonl({"c": bad, "role": "user", "content": "Hello there"},
                                            {"c": "b", "role": "user", "content": "Hi there"}))
    write_source(project, "t", "kind: file\nfiles: [in/t.jsonl]\n"
                 "conversation: {group_by: c}\n")
    result = curate(project, "pull")
    assert result.returncode == 0, result.stderr
    dropped = pd.read_parquet(project / "data" / "dropped" / "pull.parquet")
    assert dropped[["source_record_id", "reason", "field"]].values.tolist() == [
        ["in/x.jsonl:2", "utf8", "cat"], ["in/x.jsonl:3", "utf8", "model"],
        ["in/x.jsonl:4", "utf8", "fam"], ["in/x.jsonl:5", "utf8", "pair"],
        ["in/x.jsonl:6", "bad_judgment", "refused"], ["in/x.jsonl:7", "utf8", "cat"],
        ["in/t.jsonl:1", "utf8", "c"]]
    assert dropped["detail"][4] == "is_refusal: 'x\\ud800' is not a yes/no value"


def test_a_file_name_that_is_not_utf8_or_a_path_with_nul_is_one_line(project: Path) -> None:
    (project / "in").mkdir()
    (project / "in" / os.fsdecode(b"bad\xffname.jsonl")).write_bytes(jsonl(GOOD))
    write_source(project, "s", "kind: file\nfiles: ['in/*']\n")
    result = curate(project, "pull")
    assert result.returncode == 1 and result.stderr == (
        "error: sources/s.yaml, line 5: field 'files[0]': the name of in/bad\\xffname.jsonl "
        "is not UTF-8; rename the file\n")
    write_source(project, "s", 'kind: file\nfiles: ["in/x.jsonl\\x00"]\n')
    result = curate(project, "pull")
    assert result.returncode == 1 and result.stderr.startswith(
        "error: sources/s.yaml, line 5: field 'files[0]': a path cannot hold a NUL character")


def test_category_map_keys_that_differ_only_in_case_are_refused(project: Path) -> None:
    write(project / "in" / "x.jsonl", jsonl(GOOD))
    write_source(project, "s", "kind: file\nfiles: [in/x.jsonl]\n"
                 "category_map: {Self: violence, self: weapons}\n")
    result = curate(project, "pull")
    assert result.returncode == 1
    assert "'self' and 'Self' are the same category" in result.stderr
