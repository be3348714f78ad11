"""Shared fixtures: a throwaway project folder and a way to run the real `curate` command."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CURATE = Path(sys.executable).parent / "curate"
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


def curate(project: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run the installed `curate` command in `project`, as a user would."""
    env = {**os.environ, "CURATION_CACHE_DIR": str(SHARED_CACHE)}
    return subprocess.run([str(CURATE), *args], cwd=project, capture_output=True, text=True,
                          env=env, timeout=600)
