"""dvc.yaml cannot drift from the code: every module a stage runs is one of its deps, and
editing the category-to-domain rule makes `dvc repro` rerun `label` (and only what it must)."""

from __future__ import annotations

import ast
import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import DVC, REPO, run

STAGES = ("pull", "normalize", "dedup", "families", "suggest", "label", "split", "release")


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
