"""Releases: every configuration loads with the real `datasets.load_dataset` and matches
the manifest; the card says what it must; versions are immutable."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
from pathlib import Path

import datasets
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from conftest import REPO, curate, set_params

VERSION = yaml.safe_load((REPO / "params.yaml").read_text())["release"]["version"]


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")


def test_every_configuration_loads_and_matches_the_manifest(built: Path,
                                                            tmp_path: Path) -> None:
    folder = built / "releases" / VERSION
    manifest = json.loads((folder / "manifest.json").read_text())
    assert len(manifest["rows"]) == 6
    cache = str(tmp_path / "hf-cache")
    for config, counts in manifest["rows"].items():
        loaded = datasets.load_dataset(str(folder), config, cache_dir=cache)
        assert {name: len(split) for name, split in loaded.items()} == counts, config
    loaded = datasets.load_dataset(str(folder), cache_dir=cache)  # no name: `default`
    assert {name: len(split) for name, split in loaded.items()} == manifest["rows"]["default"]
    for path, entry in manifest["files"].items():
        data = (folder / path).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry[
            "bytes"], path
    on_disk = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
    assert on_disk == set(manifest["files"]) | {"manifest.json"}
    assert manifest["sources"]["pyrit_harm"]["artifact"]["sha256"].startswith("84581036")
    assert manifest["params"]["release"]["version"] == VERSION
    assert manifest["toolkit"]["name"] == "refusal-curation"
    assert (folder / "schemas" / "taxonomy.yaml").exists()


def test_the_dataset_card(built: Path) -> None:
    from huggingface_hub import DatasetCard, DatasetCardData

    card = (built / "releases" / VERSION / "README.md").read_text()
    header = yaml.safe_load(card.split("---\n")[1])
    # the header is huggingface_hub's card data, and reads back the same
    loaded = DatasetCard.load(built / "releases" / VERSION / "README.md")
    assert isinstance(loaded.data, DatasetCardData)
    assert DatasetCardData(**header).to_dict() == loaded.data.to_dict() == header
    assert [c["config_name"] for c in header["configs"]][0] == "default"
    assert header["license"] == ["apache-2.0", "mit"] and header["language"] == ["en"]
    assert header["source_datasets"] == ["extended"]  # no source is a Hub dataset
    assert header["language_creators"] == ["found"]
    assert header["multilinguality"] == ["monolingual"]
    assert header["task_ids"] == ["multi-class-classification"]
    assert header["annotations_creators"] == ["found"]  # category maps only, in the demo
    assert "harmful requests" in header["extra_gated_prompt"]
    assert header["extra_gated_fields"]["Affiliation"] == "text"
    for key in ("task_categories", "size_categories", "pretty_name", "tags"):
        assert header[key], key
    headings = [line for line in card.splitlines() if line.startswith("#")]
    for heading in ("## Summary", "## Uses", "### Direct use", "### Out-of-scope use",
                    "## Configurations", "### Items per configuration, split and domain",
                    "## How to load", "## Risk domains", "### Referral resources",
                    "## Sources", "## How it was built", "## Example instance",
                    "## Data fields", "## Personal and sensitive information",
                    "## Bias, risks and limitations", "## Citation"):
        assert heading in headings, heading
    assert "Content warning" in card
    example = json.loads(card.split("## Example instance")[1].split("```json\n")[1]
                         .split("\n```")[0])
    assert example["domain"] and example["messages"] and "annotated_detail" in str(example)
    assert "![Items per risk domain](domain_distribution.png)" in card
    assert (built / "releases" / VERSION / "domain_distribution.png").read_bytes()[:4] == (
        b"\x89PNG")
    for source in ("Wang, Yuxia", "Microsoft AI Red Team"):
        assert source in card
    entries = re.findall(r"^@\w+\{[^,]+,", card, flags=re.M)
    assert len(entries) == len(set(entries)) >= 3  # the dataset's own, and each source's once
    assert entries[0].startswith("@misc{refusal_curation_refusal_domains_demo_")
    assert "Zou, Andy" not in card  # AdvBench is a reference set: in the contamination table only
    assert "| heldout-weapons | test | 0 | 0 | 0 |" in card
    assert ("| Suicide and self-harm | 988 Suicide & Crisis Lifeline | call or text 988 | US |"
            in card)
    hub_snippet = card.split("## How to load")[1].split("\n## ")[0]
    assert 'load_dataset("refusal-curation/refusal-domains-demo"' in hub_snippet


@pytest.fixture
def release_project(built: Path, tmp_path: Path) -> Path:
    project = tmp_path / "p"
    project.mkdir()
    for name in ("data", "reports", "releases"):
        shutil.copytree(built / name, project / name)
    shutil.copytree(REPO / "schemas", project / "schemas")
    shutil.copy(REPO / "params.yaml", project / "params.yaml")
    return project


def versions(project: Path) -> list[str]:
    return sorted(p.name for p in (project / "releases").iterdir() if p.is_dir())


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def test_same_content_rebuilds_byte_identical(release_project: Path) -> None:
    folder = release_project / "releases" / VERSION
    before = snapshot(folder)
    result = curate(release_project, "release")
    assert result.returncode == 0, result.stderr
    assert snapshot(folder) == before


def test_splits_older_than_the_items_or_altered_since_are_not_released(release_project: Path
                                                                       ) -> None:
    """A split that stopped leaves the last build's files: releasing them would ship items
    that label or redact have since taken out, under a card counting today's."""
    redacted = release_project / "data" / "redacted.parquet"
    items = redacted.read_bytes()
    table = pq.read_table(redacted)
    pq.write_table(table.slice(0, table.num_rows - 8), redacted)
    result = curate(release_project, "release")
    assert result.returncode == 1 and result.stderr == (
        "error: reports/splits.json: the splits were built from another "
        "data/redacted.parquet; run `curate split` again\n")
    redacted.write_bytes(items)  # the items split read, then one split file altered
    test = release_project / "data" / "splits" / "default" / "test.parquet"
    rows = pq.read_table(test)
    pq.write_table(pa.concat_tables([rows, rows.slice(0, 1)]), test)
    result = curate(release_project, "release")
    assert result.returncode == 1 and result.stderr == (
        f"error: data/splits/default/test.parquet: holds {rows.num_rows + 1} rows where "
        f"`curate split` wrote {rows.num_rows}; run `curate split` again\n")


@pytest.mark.parametrize("text, message", [
    ("{", "reports/labels.json: not a readable report (Expecting property name enclosed in "
          "double quotes: line 1 column 2 (char 1)); run `curate label` again"),
    ("{}", "reports: a report lacks what the card reads (KeyError: ")])
def test_a_damaged_report_is_one_line(release_project: Path, text: str, message: str) -> None:
    (release_project / "reports" / "labels.json").write_text(text)
    result = curate(release_project, "release")
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith("error: " + message)


def test_a_working_build_is_rebuilt_and_a_frozen_version_never_changes(
        release_project: Path) -> None:
    folder = release_project / "releases" / VERSION
    registry = release_project / "released.yaml"
    frozen = curate(release_project, "release", "freeze", VERSION)
    assert frozen.returncode == 0, frozen.stderr
    assert f"{VERSION} frozen in" in frozen.stdout
    content = json.loads((folder / "manifest.json").read_text())["content_sha256"]
    assert yaml.safe_load(registry.read_text()) == {
        "versions": {VERSION: {"content_sha256": content}}}
    assert "was already frozen" in curate(release_project, "release", "freeze",
                                          VERSION).stdout
    before = snapshot(folder)
    assert curate(release_project, "release").returncode == 0  # the same build: no change
    assert snapshot(folder) == before
    gated = yaml.safe_load((REPO / "params.yaml").read_text())["release"]["gated"]
    set_params(release_project, "release", gated={**gated, "enabled": False})
    result = curate(release_project, "release")  # same rows, but the card would lose its gate
    assert result.returncode == 1 and result.stderr == (
        f"error: released.yaml: field 'versions.{VERSION}': version {VERSION} was released; "
        "rebuilding it would change its dataset card (README.md: its text, gate or "
        "metadata); a released version never changes: set a new release.version\n")
    assert snapshot(folder) == before
    set_params(release_project, "release", gated=gated)
    test_file = release_project / "data" / "splits" / "default" / "test.parquet"
    rows = datasets.Dataset.from_parquet(str(test_file)).select(range(3))
    rows.to_parquet(str(test_file))  # as if split had written 3 test rows
    report = release_project / "reports" / "splits.json"
    written = json.loads(report.read_text())
    written["configs"]["default"]["rows"]["test"] = 3
    report.write_text(json.dumps(written))
    result = curate(release_project, "release")
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"error: released.yaml: field 'versions.{VERSION}': version {VERSION} was released "
        "with other content (0 ids added, 25 removed, 0 relabelled")
    assert "removed" in result.stderr and "set a new release.version" in result.stderr
    assert snapshot(folder) == before

    set_params(release_project, "release", version="9.0.0")
    assert curate(release_project, "release").returncode == 0
    assert (release_project / "releases" / "9.0.0" / "manifest.json").exists()
    assert versions(release_project) == [VERSION, "9.0.0"]
    changelog = (release_project / "releases" / "CHANGELOG.md").read_text()
    assert "## 9.0.0" in changelog and "removed" in changelog

    set_params(release_project, "release", version=VERSION)
    registry.write_text("versions: {}\n")  # not frozen: a working build, rebuilt
    assert curate(release_project, "release").returncode == 0
    assert json.loads((folder / "manifest.json").read_text())["rows"]["default"]["test"] == 3


def test_an_invalid_version_is_refused_before_anything_is_written(
        release_project: Path) -> None:
    for version in ("v1", "1.0.0+build.5"):
        set_params(release_project, "release", version=version)
        result = curate(release_project, "release")
        assert result.returncode == 1
        assert re.fullmatch(r"error: params.yaml, line \d+: field 'release.version': must be "
                            r"semver without build metadata, like 1.2.0 or 1.2.0-rc.1 \(got "
                            rf"str '{re.escape(version)}'\)", result.stderr.strip())
    assert versions(release_project) == [VERSION]


def test_a_staging_folder_left_by_a_killed_release_is_removed(release_project: Path) -> None:
    stale = release_project / "releases" / f".{VERSION}.k1ll3d" / VERSION
    stale.mkdir(parents=True)
    assert curate(release_project, "release").returncode == 0
    assert not stale.parent.exists()


def test_every_released_response_carries_its_signals_and_the_card_their_rates(
        built: Path) -> None:
    loaded = datasets.load_dataset(str(built / "releases" / VERSION), "default")
    responses = [r for split in loaded.values() for rs in split["responses"] for r in rs]
    assert len(responses) > 100
    assert all(isinstance(r["signals"]["refusal"], bool)
               and isinstance(r["signals"]["referral"], bool) for r in responses)
    assert 0 < sum(r["signals"]["refusal"] for r in responses) < len(responses)
    assert 0 < sum(r["signals"]["referral"] for r in responses) < len(responses)
    report = json.loads((built / "reports" / "signals.json").read_text())
    human = report["refusal_vs_human"]
    # pyrit_refusal ships 60 human refusal labels (30 refusals) on the responses kept
    assert human["responses"] == 60 and human["sources"] == ["pyrit_refusal"]
    assert human["true_positive"] + human["false_negative"] == 30
    assert human["precision"] == 1.0 and 0.3 <= human["recall"] <= 0.5
    card = (built / "releases" / VERSION / "README.md").read_text()
    assert (f"the refusal rule has precision {human['precision']} and recall "
            f"{human['recall']}") in card
    rows = re.findall(r"^\| (\w+) \| (\d+) \| (\d+%|-) \| (\d+%|-) \| (\d+) \|", card, re.M)
    by_domain = {domain: int(n) for domain, n, *_ in rows}
    assert set(by_domain) == {"suicide_self_harm", "substance_use", "violence", "weapons",
                              "sexual_crimes"}
    harmful = [r for split in loaded.values() for item in split
               if item["expected_behavior"] == "refuse" for r in item["responses"]]
    assert sum(by_domain.values()) == len(harmful)
