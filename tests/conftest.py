"""Shared fixtures: a throwaway project folder and a way to run the real `curate` command."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from itertools import permutations
from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
import yaml
from hypothesis import settings

# Property tests explore the same examples on every run: a CI result must not be luck.
settings.register_profile("deterministic", derandomize=True)
settings.load_profile("deterministic")

# `datasets` caches what it loads; a rebuilt release at a reused path must not load stale.
os.environ["HF_DATASETS_CACHE"] = tempfile.mkdtemp(prefix="hf-datasets-")
REPO = Path(__file__).resolve().parent.parent
CURATE = Path(sys.executable).parent / "curate"
DVC = str(Path(sys.executable).parent / "dvc")
# Wheels pinned by pypi sources are downloaded once and shared by every test and `make demo`.
SHARED_CACHE = REPO / "data" / "cache"


@pytest.fixture(autouse=True)
def _shared_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CURATION_CACHE_DIR", str(SHARED_CACHE))


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A project folder with the repo's schemas and params and an empty sources/ folder."""
    shutil.copytree(REPO / "schemas", tmp_path / "schemas")
    shutil.copy(REPO / "params.yaml", tmp_path / "params.yaml")
    (tmp_path / "sources").mkdir()
    return tmp_path


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    return path


def write_source(project: Path, name: str, body: str) -> Path:
    """A source YAML with license and citation filled in; `body` holds the rest."""
    header = f"name: {name}\nlicense: CC-BY-4.0\ncitation: Test fixture {name}\n"
    return write(project / "sources" / f"{name}.yaml", header + textwrap.dedent(body))


def set_params(project: Path, section: str, **values: object) -> None:
    """Change some of one section's parameters in the project's params.yaml."""
    params = yaml.safe_load((project / "params.yaml").read_text())
    params[section].update(values)
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def curate(project: Path, *args: str, cache: Path = SHARED_CACHE
           ) -> subprocess.CompletedProcess[str]:
    """Run the installed `curate` command in `project`, as a user would."""
    env = {**os.environ, "CURATION_CACHE_DIR": str(cache)}
    return subprocess.run([str(CURATE), *args], cwd=project, capture_output=True, text=True,
                          env=env, timeout=600)


def curate_streamed(project: Path, stage: str, **constants: int
                    ) -> subprocess.CompletedProcess[str]:
    """`curate <stage>` with constants of its module set first (`_STREAM_ROWS=7`: the
    stage streams in batches of 7), as `curate` runs it otherwise."""
    code = (f"import sys, curation.stages.{stage} as stage\n"
            + "".join(f"stage.{name} = {value!r}\n" for name, value in constants.items())
            + f"from curation.cli import main\nsys.argv = ['curate', '{stage}']\nmain()\n")
    env = {**os.environ, "CURATION_CACHE_DIR": str(SHARED_CACHE)}
    return subprocess.run([sys.executable, "-c", code], cwd=project, capture_output=True,
                          text=True, env=env, timeout=600)


def assert_streamed_same(project: Path, stage: str, table: str, files: list[str],
                         groups: int = 1, **constants: int) -> None:
    """Run `stage` again with `constants` (small batches, `curate_streamed`) and check it
    writes what its run before wrote: `data/<table>.parquet` equal in more than `groups`
    row groups, `files` byte for byte, and its dropped rows (in any order)."""
    path = project / "data" / f"{table}.parquet"
    before = pq.read_table(path)
    whole = {name: (project / name).read_bytes() for name in files}
    ledger = project / "data" / "dropped" / f"{stage}.parquet"
    dropped = pd.read_parquet(ledger) if ledger.exists() else None
    streamed = curate_streamed(project, stage, **constants)
    assert streamed.returncode == 0, streamed.stderr
    assert pq.ParquetFile(path).num_row_groups > groups
    assert pq.read_table(path).equals(before)
    for name, content in whole.items():
        assert (project / name).read_bytes() == content, name
    if dropped is not None:
        assert pd.read_parquet(ledger).sort_values("id").reset_index(drop=True).equals(
            dropped.sort_values("id").reset_index(drop=True))


# A command added to the real entry point: it connects to Ray when given an address,
# spills a table, and then waits to be killed.
_SPILL_AND_WAIT = """
import sys, time, click, pyarrow as pa
from curation.cli import cli, main
from curation.core.engine import connect_ray
from curation.core.tableio import SpillFile

@cli.command()
@click.option("--ray")
def spill_and_wait(ray):
    if ray:
        connect_ray(ray)
    with SpillFile("test") as spill:
        spill.write(pa.table({"a": [1, 2, 3]}))
        print(spill.path, flush=True)
        time.sleep(120)

main()
"""


def sigterm_while_spilling(tmp: Path, ray: str | None = None
                           ) -> tuple[int, str, bool]:
    """Run `curate spill-and-wait` with TMPDIR=`tmp`, SIGTERM it inside its spill and
    return its exit code, its stderr and whether its spill file was under `tmp`."""
    process = subprocess.Popen(
        [sys.executable, "-c", _SPILL_AND_WAIT, "spill-and-wait",
         *(["--ray", ray] if ray else [])], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True, env={**os.environ, "TMPDIR": str(tmp)})
    spill = Path(process.stdout.readline().strip())
    spilled = spill.is_file() and spill.is_relative_to(tmp)
    time.sleep(0.2)  # inside the sleep
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    return process.returncode, stderr, spilled


def fresh_cache(folder: Path) -> Path:
    """A cache with no embeddings yet that shares the downloaded wheels and models."""
    folder.mkdir(parents=True, exist_ok=True)
    for shared in ("pypi", "models"):
        (SHARED_CACHE / shared).mkdir(parents=True, exist_ok=True)
        (folder / shared).symlink_to(SHARED_CACHE / shared)
    return folder


PROJECT_FILES = ["dvc.yaml", ".dvcignore", "params.yaml", "released.yaml", "schemas", "sources",
                 "curation", "annotations"]


def copy_project(target: Path) -> Path:
    """The files `dvc repro` needs, copied from this repository."""
    target.mkdir(parents=True)
    for name in PROJECT_FILES:
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, target / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(source, target / name)
    return target


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    """Run a command with the venv on PATH (as `make` does); it must succeed."""
    env = {**os.environ, "CURATION_CACHE_DIR": str(SHARED_CACHE), "DVC_NO_ANALYTICS": "1",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=900)
    assert result.returncode == 0, f"{cmd}: {result.stdout}\n{result.stderr}"
    return result


@pytest.fixture(scope="session")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The real demo pipeline, built once by `dvc repro` in a fresh git repository."""
    project = copy_project(tmp_path_factory.mktemp("dvc") / "repo")
    run(["git", "init", "-q"], project)
    run([DVC, "init", "-q"], project)
    run([DVC, "repro"], project)
    return project


def nominal_alpha(units: list[list[str]]) -> float:
    """Krippendorff's alpha for nominal data from its coincidence matrix (by hand)."""
    coincidences: Counter = Counter()
    for values in units:
        if len(values) < 2:
            continue
        for c, k in permutations(range(len(values)), 2):
            coincidences[(values[c], values[k])] += 1 / (len(values) - 1)
    totals: Counter = Counter()
    for (c, _), weight in coincidences.items():
        totals[c] += weight
    n = sum(totals.values())
    observed = sum(w for (c, k), w in coincidences.items() if c != k)
    expected = sum(totals[c] * totals[k] for c in totals for k in totals if c != k)
    return 1 - (n - 1) * observed / expected
