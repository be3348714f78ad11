"""Splits on the real demo data: stratified default, held-out domains, no leakage across
splits, reserved ids in train, and the errors that stop the stage before writing."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import REPO, curate, curate_streamed, set_params

from curation.core.config import load_params

SPLITS = ("train", "validation", "test")


def configs(project: Path) -> dict[str, pd.DataFrame]:
    root = project / "data" / "splits"
    return {c.name: pd.concat([pd.read_parquet(c / f"{s}.parquet") for s in SPLITS])
            for c in sorted(root.iterdir())}


def test_held_out_configs_hold_one_domain_in_test_and_none_in_train(built: Path) -> None:
    found = configs(built)
    domains = sorted(pd.read_parquet(built / "data" / "labeled.parquet")["domain"].unique())
    assert sorted(found) == ["default"] + [f"heldout-{d}" for d in domains]
    for domain in domains:
        frame = found[f"heldout-{domain}"]
        assert set(frame.loc[frame["split"] == "test", "domain"]) == {domain}
        assert domain not in set(frame.loc[frame["split"] != "test", "domain"])
    default = found["default"]
    assert set(default["id"]) == set(pd.read_parquet(built / "data" / "labeled.parquet")["id"])
    for domain, rows in default.groupby("domain"):
        assert set(rows["split"]) == set(SPLITS), domain  # every domain in every split


def test_no_family_straddles_splits(built: Path) -> None:
    labeled = pd.read_parquet(built / "data" / "labeled.parquet")
    params = load_params(REPO / "params.yaml").params
    assert labeled["family_id"].duplicated().sum() > 20  # the demo data has families to keep together
    for name, frame in configs(built).items():
        assert (frame.groupby("family_id")["split"].nunique() == 1).all(), name
    report = json.loads((built / "reports" / "splits.json").read_text())
    for figures in report["configs"].values():
        assert figures["max_cross_split_jaccard"] < params.families.jaccard
        assert 0.3 <= figures["max_cross_split_cosine"] < 1.0
        sizes = {int(k): n for k, n in figures["family_sizes"].items()}
        assert sizes[1] > 0 and max(sizes) <= params.families.max_family_size


def test_default_split_sizes_follow_the_params_per_domain(built: Path) -> None:
    default = configs(built)["default"]
    report = json.loads((built / "reports" / "splits.json").read_text())
    for domain, rows in default.groupby("domain"):
        expected = max(1, round(0.1 * len(rows)))
        for name in ("validation", "test"):
            # groups (families, contrast pairs) move together: one row of overshoot at most
            assert abs((rows["split"] == name).sum() - expected) <= 2, (domain, name)
            assert report["configs"]["default"]["by_domain"][name][domain] == (
                rows["split"] == name).sum()


@pytest.fixture
def labeled_project(built: Path, tmp_path: Path) -> Path:
    project = tmp_path / "p"
    (project / "data").mkdir(parents=True)
    for name in ("redacted.parquet", "signatures.parquet", "embeddings.parquet",
                 "neighbours.parquet"):
        shutil.copy(built / "data" / name, project / "data" / name)
    shutil.copytree(REPO / "schemas", project / "schemas")
    shutil.copy(REPO / "params.yaml", project / "params.yaml")
    return project


def test_counts_per_domain_and_reserved_ids(labeled_project: Path, built: Path) -> None:
    test_ids = pd.read_parquet(built / "data" / "splits" / "default" / "test.parquet")["id"]
    reserved = sorted(test_ids)[:3]
    set_params(labeled_project, "split", validation=2, test=2, reserved_ids=reserved)
    result = curate(labeled_project, "split")
    assert result.returncode == 0, result.stderr
    default = configs(labeled_project)["default"]
    assert set(default.loc[default["id"].isin(reserved), "split"]) == {"train"}
    counts = default[default["split"] != "train"].groupby(["split", "domain"]).size()
    # Families and contrast pairs move whole: one row of overshoot at most, and a small
    # domain whose reserved items took its only small groups may fall one short.
    assert len(counts) == 10 and (counts >= 1).all() and (counts <= 3).all()
    assert abs(counts.sum() - 20) <= 3
    domains = default.set_index("id").loc[reserved, "domain"]
    for item, domain in domains.items():  # a few-shot example is never tested on
        assert item not in configs(labeled_project)[f"heldout-{domain}"]["id"].tolist()


@pytest.mark.parametrize("change, message", [
    ({"validation": 100, "test": 100}, "field 'split.test': validation + test take 200 items"),
    ({"reserved_ids": ["0000000000000000"]},
     "field 'split.reserved_ids': reserved id '0000000000000000' is not among"),
    ({"validation": 1.5}, "field 'split.validation': must be a fraction in (0, 1) or a count"),
    ({"validation": 5}, "field 'split.validation': domain 'substance_use' has no train item "
                        "left: validation 6 and test 2 take all 8"),
])
def test_bad_split_params_stop_before_writing(labeled_project: Path, change: dict,
                                              message: str) -> None:
    set_params(labeled_project, "split", **change)
    result = curate(labeled_project, "split")
    assert result.returncode == 1 and message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (labeled_project / "data" / "splits").exists()


def test_a_taxonomy_domain_missing_from_the_data_stops_the_split(labeled_project: Path) -> None:
    taxonomy = labeled_project / "schemas" / "taxonomy.yaml"
    taxonomy.write_text(taxonomy.read_text() + "  - id: fraud\n    title: Fraud\n"
                        "    definition: Deceiving people for money.\n")
    result = curate(labeled_project, "split")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: schemas/taxonomy.yaml: field 'domains': domain 'fraud' has no labeled items, "
        "so its held-out configuration would have no test set")
    assert not (labeled_project / "data" / "splits").exists()


@pytest.mark.parametrize("column, value, message", [
    ("family_id", None, "has no family_id; run `curate redact` again"),
    ("domain", "cooking", "has domain 'cooking', which the taxonomy does not have; run "
                          "`curate label` again"),
])
def test_an_item_without_a_family_or_with_an_unknown_domain_stops_the_split(
        labeled_project: Path, column: str, value: str | None, message: str) -> None:
    path = labeled_project / "data" / "redacted.parquet"
    table = pq.read_table(path)
    values = table[column].to_pylist()
    values[0] = value
    pq.write_table(table.set_column(table.column_names.index(column), column,
                                    pa.array(values, table.schema.field(column).type)), path)
    result = curate(labeled_project, "split")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr == (f"error: data/redacted.parquet: field '{column}': item "
                             f"{table['id'][0]} {message}\n")
    assert not (labeled_project / "data" / "splits").exists()


def test_same_inputs_same_split(labeled_project: Path, built: Path) -> None:
    assert curate(labeled_project, "split").returncode == 0
    for path in sorted((built / "data" / "splits").rglob("*.parquet")):
        relative = path.relative_to(built)
        assert (labeled_project / relative).read_bytes() == path.read_bytes(), relative
    assert ((labeled_project / "reports" / "splits.json").read_bytes()
            == (built / "reports" / "splits.json").read_bytes())


def test_the_leak_report_from_saved_neighbours_matches_an_exhaustive_search(
        built: Path) -> None:
    """Split reads the families' neighbour pairs instead of searching all pairs; on the
    demo its highest cross-split cosine per configuration is the exhaustive one."""
    saved = pd.read_parquet(built / "data" / "embeddings.parquet")
    vectors = np.stack(saved["vector"].to_numpy()).astype(np.float64)
    row = {item: i for i, item in enumerate(saved["id"])}
    report = json.loads((built / "reports" / "splits.json").read_text())
    assert report["neighbour_pairs_checked"] > 0
    for name, frame in configs(built).items():
        rows = frame["id"].map(row).to_numpy()
        cosine = vectors[rows] @ vectors[rows].T
        split = frame["split"].to_numpy()
        exhaustive = cosine[split[:, None] != split[None, :]].max()
        assert report["configs"][name]["max_cross_split_cosine"] == round(float(exhaustive), 4)


def test_an_off_contract_or_repeated_item_stops_the_split_in_one_line(
        labeled_project: Path) -> None:
    """The split checks its input in batches: a broken row in a later batch, and an id
    repeated across the table, still stop it before anything is written."""
    path = labeled_project / "data" / "redacted.parquet"
    table = pq.read_table(path)
    last = table["id"].to_pylist().index(max(table["id"].to_pylist()))  # checked last
    prompts = table["prompt"].to_pylist()
    prompts[last] = ""
    pq.write_table(table.set_column(table.column_names.index("prompt"), "prompt",
                                    pa.array(prompts, table.schema.field("prompt").type)), path)
    result = curate_streamed(labeled_project, "split", _CHECKED_ROWS=7)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    line, = result.stderr.strip().splitlines()
    assert line.startswith("error: schemas/split.yaml: field 'prompt': default: prompt:")
    assert not (labeled_project / "data" / "splits").exists()
    pq.write_table(pa.concat_tables([table, table.slice(0, 1)]), path)
    result = curate(labeled_project, "split")
    assert result.returncode == 1
    line, = result.stderr.strip().splitlines()
    assert line.startswith(f"error: data/redacted.parquet, row {table.num_rows + 1}: field 'id'")
    assert line.endswith("is also in row 1: ids must be unique; run `curate redact` again")
    assert not (labeled_project / "data" / "splits").exists()


def test_written_and_checked_in_small_batches_the_files_are_the_same(
        labeled_project: Path) -> None:
    assert curate(labeled_project, "split").returncode == 0
    files = sorted((labeled_project / "data" / "splits").rglob("*.parquet"))
    whole = {path: pq.read_table(path) for path in files}
    report = (labeled_project / "reports" / "splits.json").read_bytes()
    result = curate_streamed(labeled_project, "split", _WRITTEN_ROWS=7, _CHECKED_ROWS=7)
    assert result.returncode == 0, result.stderr
    assert pq.ParquetFile(files[0]).num_row_groups > 1
    for path, table in whole.items():
        assert pq.read_table(path).equals(table), path
    assert (labeled_project / "reports" / "splits.json").read_bytes() == report


@pytest.mark.parametrize("name, stage", [("neighbours.parquet", "families"),
                                         ("embeddings.parquet", "families"),
                                         ("signatures.parquet", "dedup")])
def test_a_corrupt_page_in_a_table_split_reads_is_one_line(labeled_project: Path, name: str,
                                                           stage: str) -> None:
    """The footer intact, the pages scrambled: the file opens, its reading fails."""
    path = labeled_project / "data" / name
    data = bytearray(path.read_bytes())
    for i in range(100, len(data) // 2):
        data[i] ^= 0x5A
    path.write_bytes(bytes(data))
    result = curate(labeled_project, "split")
    assert result.returncode == 1 and len(result.stderr.splitlines()) == 1, result.stderr
    assert result.stderr.startswith(f"error: data/{name}: ")
    assert result.stderr.rstrip().endswith(f"run `curate {stage}` again")


def test_split_before_redact_says_to_run_redact(labeled_project: Path) -> None:
    (labeled_project / "data" / "redacted.parquet").unlink()
    result = curate(labeled_project, "split")
    assert result.returncode == 1 and result.stderr == (
        "error: data/redacted.parquet: not found; run `curate redact` first\n")
