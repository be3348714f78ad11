"""The input files of a source, whatever its kind: local files, members of a pinned wheel,
or a Hub dataset; each with the name rows are addressed by and a fingerprint."""

from __future__ import annotations

import fnmatch
import glob
import hashlib
import io
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from curation.core.errors import CurationError
from curation.core.tableio import sha256_of
from curation.sources.hub import hub_dataset, hub_records
from curation.sources.pypi import pypi_artifact
from curation.sources.readers import Record, read_records
from curation.sources.spec import Source


@dataclass(frozen=True)
class InputFile:
    """One file of a source: the name rows are addressed by, its records, its fingerprint."""

    name: str
    records: Callable[[], Iterator[Record]]
    fingerprint: str


def input_files(source: Source, cache: Path) -> Iterator[InputFile]:
    if source.kind == "file":
        yield from _local_files(source)
    elif source.kind == "pypi":
        yield from _wheel_members(source, cache)
    else:
        assert source.hub is not None  # checked when the source was loaded
        dataset = hub_dataset(source.hub, source.config_path)
        yield InputFile(source.hub.split, lambda: hub_records(dataset), dataset._fingerprint)


def _local_files(source: Source) -> Iterator[InputFile]:
    for pattern in source.files:
        matches = sorted(glob.glob(pattern, recursive=True))
        if not matches:
            raise CurationError(f"no file matches '{pattern}'", file=source.config_path,
                                field="files")
        for path in matches:
            fmt = source.format_of(path)
            yield InputFile(path, lambda path=path, fmt=fmt: _read_file(source, path, fmt),
                            sha256_of(Path(path)))


def _read_file(source: Source, path: str, fmt: str) -> Iterator[Record]:
    with open(path, "rb") as stream:
        yield from read_records(stream, fmt, path, source.comment_prefix, source.records_key)


def _wheel_members(source: Source, cache: Path) -> Iterator[InputFile]:
    assert source.artifact is not None  # checked when the source was loaded
    artifact = pypi_artifact(source.artifact, cache, source.config_path)
    with zipfile.ZipFile(artifact) as wheel:
        members = sorted(wheel.namelist())
        for pattern in source.files:
            matches = [m for m in members if fnmatch.fnmatchcase(m, pattern)]
            if not matches:
                raise CurationError(f"no member of {artifact.name} matches '{pattern}'",
                                    file=source.config_path, field="files")
            for member in matches:
                data, fmt = wheel.read(member), source.format_of(member)
                yield InputFile(member, lambda data=data, member=member, fmt=fmt: read_records(
                    io.BytesIO(data), fmt, member, source.comment_prefix, source.records_key),
                    hashlib.sha256(data).hexdigest())
