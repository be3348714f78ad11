"""dvc.yaml cannot drift from the code: every module a stage runs is one of its deps, and
editing the category-to-domain rule makes `dvc repro` rerun `label` (and only what it must)."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml
from conftest import DVC, REPO, run

STAGES = ("pull", "normalize", "dedup", "families", "suggest", "label", "redact", "split",
          "release")


def module_file(name: str) -> Path | None:
    path = REPO / Path(*name.split("."))
    for candidate in (path / "__init__.py", path.with_suffix(".py")):
        if candidate.exists():
            return candidate
    return None


def imported(path: Path) -> set[str]:
    """Modules of `curation` a file imports, at any level (lazy imports count too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith(
                "curation"):
            names.add(node.module)
            names.update(f"{node.module}.{a.name}" for a in node.names
                         if module_file(f"{node.module}.{a.name}"))
        elif isinstance(node, ast.Import):
            names.update(a.name for a in node.names if a.name.startswith("curation"))
    return names


def stage_files(stage: str) -> set[str]:
    """Every file of the package that `curation.stages.<stage>` runs, with its packages'
    `__init__.py` files."""
    seen: set[str] = set()
    todo = [f"curation.stages.{stage}"]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for end in range(1, len(parts) + 1):
            path = module_file(".".join(parts[:end]))
            if path is not None and str(path.relative_to(REPO)) not in seen:
                seen.add(str(path.relative_to(REPO)))
                todo.extend(imported(path))
    return seen


@pytest.mark.parametrize("stage", STAGES)
def test_every_module_a_stage_runs_is_a_dvc_dependency(stage: str) -> None:
    spec = yaml.safe_load((REPO / "dvc.yaml").read_text())["stages"][stage]
    assert spec["cmd"] == f"curate {stage}"
    deps = [d if isinstance(d, str) else next(iter(d)) for d in spec["deps"]]
    files = stage_files(stage)
    assert f"curation/stages/{stage}.py" in files and len(files) > 5
    missing = sorted(f for f in files if not any(f == d or f.startswith(f"{d}/") for d in deps))
    assert not missing, f"dvc.yaml stage {stage} misses {missing}"


def test_editing_the_category_rule_reruns_label(built: Path, tmp_path: Path) -> None:
    project = tmp_path / "repo"
    shutil.copytree(built, project, symlinks=True)
    spec = project / "curation" / "sources" / "spec.py"
    rule = "return self._folded_map.get(category.casefold())"
    assert rule in spec.read_text()
    spec.write_text(spec.read_text().replace(
        rule, "return self._folded_map.get(category.strip().casefold())"))
    changed = json.loads(run([DVC, "status", "--json"], project).stdout)
    assert {"pull", "label"} <= set(changed)
    assert not {"normalize", "dedup", "split"} & set(changed)
    repro = run([DVC, "repro"], project).stdout
    assert "Running stage 'label'" in repro
    assert "Running stage 'normalize'" not in repro  # pull wrote the same rows


def test_an_experiment_runs_end_to_end_and_its_metrics_compare(built: Path,
                                                               tmp_path: Path) -> None:
    """`dvc exp run -S` rebuilds the working release (not frozen); metrics are numbers that
    `dvc exp show` and `dvc metrics diff` compare; `dvc plots show` draws every plot."""
    project = tmp_path / "repo"
    shutil.copytree(built, project, symlinks=True)
    items = pd.read_parquet(project / "data" / "families.parquet")["id"].head(6)
    (project / "annotations").mkdir(exist_ok=True)
    pd.DataFrame([{"dataset": "d", "record_id": item, "annotator": who, "question": "domain",
                   "value": "violence" if who == "a1" or i % 2 else "weapons",
                   "status": "submitted"} for i, item in enumerate(items)
                  for who in ("a1", "a2")]).to_parquet(project / "annotations" / "d.parquet")
    run([DVC, "repro"], project)
    run(["git", "add", "-A"], project)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "baseline"],
        project)
    for metrics in (project / "metrics").glob("*.json"):
        figures = json.loads(metrics.read_text())
        assert figures and all(v is None or isinstance(v, int | float)
                               for v in figures.values()), metrics.name

    result = run([DVC, "exp", "run", "-S", "dedup.threshold=0.7"], project)
    assert "Running stage 'release'" in result.stdout
    shown = json.loads(run([DVC, "exp", "show", "--json"], project).stdout)
    values = {}
    for commit in shown:
        for rev in [commit, *(e for x in commit.get("experiments") or []
                              for e in x.get("revs") or [])]:
            data = rev.get("data") or {}
            dedup = data.get("metrics", {}).get("metrics/dedup.json", {}).get("data", {})
            threshold = data.get("params", {}).get("params.yaml", {}).get("data", {}).get(
                "dedup", {}).get("threshold")
            if dedup:
                values[threshold] = dedup["near_duplicates"]
    assert set(values) == {0.8, 0.7} and values[0.7] > values[0.8]
    diff = json.loads(run([DVC, "metrics", "diff", "--json"], project).stdout)
    change = diff["metrics/dedup.json"]["near_duplicates"]
    assert (change["old"], change["new"]) == (values[0.8], values[0.7])

    out = tmp_path / "plots"
    run([DVC, "plots", "show", "-o", str(out)], project)
    page = (out / "index.html").read_text()
    for title in ("Items per domain and split", "Duplicate clusters by size",
                  "Paraphrase families by size",
                  "Highest cosine between items in different splits",
                  "Annotator agreement per question", "Suggestion score reliability"):
        assert title in page, title
    assert page.count("Items per domain and split") >= 6  # one per configuration
