"""Source definitions (`sources/*.yaml`): where rows come from, their license and field map,
as typed models validated like `params.yaml` (unknown keys, wrong types and repeated keys
are errors naming the file, line and field)."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, PrivateAttr, field_validator, model_validator

from curation.core.config import ConfigModel, validate
from curation.core.errors import CurationError
from curation.core.yamlfile import YamlFile
from curation.sources import fields

Kind = Literal["file", "pypi", "hub"]
Format = Literal["jsonl", "json", "csv", "parquet", "txt", "yaml", "psychosafe"]
EXTENSION_FORMATS: dict[str, Format] = {
    ".jsonl": "jsonl", ".json": "json", ".csv": "csv", ".parquet": "parquet", ".txt": "txt",
    ".yaml": "yaml", ".yml": "yaml"}
# The PsychoSafe corpus (a JSON array) names its fields this way.
PSYCHOSAFE_FIELDS = {"prompt": "prompt", "response": "answer", "category": "risk cluster"}
Text = Annotated[str, Field(min_length=1)]


def _no_nul(path: str) -> str:
    """A NUL ends a path for the operating system: what follows it would be ignored."""
    if "\x00" in path:
        raise ValueError("a path cannot hold a NUL character")
    return path


FilePath = Annotated[str, Field(min_length=1), AfterValidator(_no_nul)]


class FieldMap(ConfigModel):
    """Which input field holds each contract column (None: the input has no such field).

    Each is a field path (see `curation.sources.fields`): a key, a dotted path with list
    indexes, or `/key` for a value of the file's header."""

    prompt: Text = "prompt"
    response: Text | None = None
    category: Text | None = None
    record_id: Text | None = None
    model: Text | None = None              # the model that wrote the response
    expected_behavior: Text | None = None  # a value `expected_behavior_map` translates
    contrast: Text | None = None           # a key a benign item shares with its harmful twin
    twin: Text | None = None               # the harmful twin's prompt, in a benign record
    family: Text | None = None             # a key the items of one family share (a behaviour
                                           # id, say): they are never split apart

    @field_validator("prompt", "response", "category", "record_id", "model",
                     "expected_behavior", "contrast", "twin", "family")
    @classmethod
    def _path(cls, path: str | None) -> str | None:
        if path is not None and not fields.is_valid(path):
            raise ValueError(f"'{path}' is not a field path (like key, a.b, turns[0].text "
                             "or /header_key)")
        return path

    def mapped(self) -> dict[str, str]:
        """Column -> path, for the columns this source maps."""
        return {column: path for column, path in self.model_dump().items() if path is not None}


Behavior = Literal["refuse", "comply"]
Role = Literal["system", "user", "assistant"]


class FileEntry(ConfigModel):
    """A file (or glob) of a source, with values that hold for every record in it."""

    path: FilePath
    category: Text | None = None  # e.g. a file per harm category
    expected_behavior: Behavior | None = None


class Constants(ConfigModel):
    """Values that hold for every record of a source, unless a record or file says otherwise."""

    category: Text | None = None
    expected_behavior: Behavior = "refuse"
    model: Text | None = None  # the model that wrote the source's responses, if one did


class Conversation(ConfigModel):
    """Where a source's conversations are: a list of turns in each record (`turns`),
    records that are turns, grouped into conversations by `group_by` in `order`, or a
    transcript text whose turns begin with a speaker's name (`\n\nHuman: ...`)."""

    turns: Text | None = None       # field path of a record's list of turns
    group_by: Text | None = None    # field path: records sharing it form one conversation
    order: Text | None = None       # field path: a turn's position in its conversation
    transcript: Text | None = None  # field path of a record's transcript text
    role: Text = "role"             # a turn's (or record's) role field
    content: Text = "content"       # a turn's (or record's) text field
    roles: dict[str, Role] = {}     # source role (or speaker) names -> system, user, assistant

    @model_validator(mode="after")
    def _one_layout(self) -> Conversation:
        if sum(layout is not None for layout in (self.turns, self.group_by,
                                                  self.transcript)) != 1:
            raise ValueError("set exactly one of 'turns' (a list in each record), 'group_by' "
                             "(records that are turns) or 'transcript' (a text of turns)")
        unread = set() if self.group_by is not None else {"order"}
        if self.transcript is not None:
            unread |= {"role", "content"}
        given = sorted(unread & self.model_fields_set)
        if given:
            raise ValueError(f"'{given[0]}' is not read with "
                             f"'{'transcript' if self.transcript else 'turns'}'")
        named = set(self.roles.values())
        if self.transcript is not None and self.roles and not {"user", "assistant"} <= named:
            # an unnamed speaker's lines would be read as part of the turn before them
            raise ValueError("a transcript's roles name its user and its assistant speakers "
                             f"(missing: {', '.join(sorted({'user', 'assistant'} - named))})")
        return self


class ArtifactPin(ConfigModel):
    """A pinned PyPI distribution, checked by sha256."""

    package: Text
    version: Text
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]


class HubRef(ConfigModel):
    """A dataset read with `datasets.load_dataset`, at a pinned revision."""

    path: Text
    name: Text | None = None
    split: Text = "train"
    revision: Text | None = None


class Source(ConfigModel):
    name: Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_-]*$")]
    kind: Kind
    role: Literal["release", "reference"] = "release"  # reference: an evaluation set that
                                                        # releases must not contain
    license: Text
    citation: Text
    description: str = ""
    homepage: str = ""
    files: list[FilePath | FileEntry] = []
    constants: Constants = Constants()
    conversation: Conversation | None = None
    judgments: dict[str, Text | list[Text]] = {}  # judgment name -> field path(s); the mean
    expected_behavior_map: dict[str, Behavior] = {}  # source value -> refuse / comply
    prompt_separator: str | None = None  # a packed "question + answer": the prompt ends here
    format: Format | None = None
    fields: FieldMap = FieldMap()
    category_from: Literal["file"] | None = None  # "file": the file's name is the category
    category_map: dict[str, str] = {}
    comment_prefix: Text | None = None
    records_key: Text | None = None
    artifact: ArtifactPin | None = None
    hub: HubRef | None = None
    _config_path: str = PrivateAttr(default="")
    _doc: YamlFile | None = PrivateAttr(default=None)

    @field_validator("license", "citation", "description", mode="after")
    @classmethod
    def _stripped(cls, text: str) -> str:
        if not text.strip() and text:
            raise ValueError("must not be blank")
        return text.strip()

    @property
    def config_path(self) -> str:
        return self._config_path

    @property
    def file_entries(self) -> list[FileEntry]:
        return [FileEntry(path=f) if isinstance(f, str) else f for f in self.files]

    def error(self, field: str, message: str) -> CurationError:
        """An error located at `field` of this source's file."""
        if self._doc is None:
            return CurationError(message, file=self.config_path, field=field)
        return self._doc.error(field, message)

    @property
    def category_from_file(self) -> bool:
        return self.category_from == "file"

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

    def behavior_of(self, value: str) -> str | None:
        """The expected behaviour `expected_behavior_map` gives a source value (keys match
        case-insensitively: a JSON true is "True" here, "true" in a CSV cell)."""
        return self._folded_behaviors.get(value.casefold())

    @cached_property
    def _folded_behaviors(self) -> dict[str, str]:
        return {k.casefold(): v for k, v in self.expected_behavior_map.items()}


def load_source(path: str | Path, labels: tuple[str, ...],
                judgment_names: tuple[str, ...]) -> Source:
    """Parse and check one source file; every problem names the file, line and field.
    `labels` are what a category map may give: the domains and the out-of-scope label."""
    doc = YamlFile(path)
    data = doc.data
    if not isinstance(data, dict):
        raise CurationError("a source file must be a YAML mapping", file=str(path))
    data = {"name": Path(path).stem, **data}
    if data.get("format") == "psychosafe" and isinstance(data.get("fields", {}), dict):
        data["fields"] = {**PSYCHOSAFE_FIELDS, **(data.get("fields") or {})}
    source: Source = validate(doc, Source, data)
    source._config_path = str(path)
    source._doc = doc
    folded: dict[str, str] = {}
    for category, domain in source.category_map.items():
        if category.casefold() in folded and folded[category.casefold()] != category:
            raise doc.error(f"category_map.{category}", f"'{category}' and "
                            f"'{folded[category.casefold()]}' are the same category (keys "
                            "match case-insensitively)")
        folded[category.casefold()] = category
        if domain not in labels:
            raise doc.error(f"category_map.{category}",
                            f"unknown domain '{domain}' (it may be {', '.join(labels)})")
    said: dict[str, str] = {}
    for value in source.expected_behavior_map:
        if said.setdefault(value.casefold(), value) != value:
            raise doc.error(f"expected_behavior_map.{value}", f"'{value}' and "
                            f"'{said[value.casefold()]}' are the same value (keys match "
                            "case-insensitively)")
    for name in source.judgments:
        if name not in judgment_names:
            raise doc.error(f"judgments.{name}", f"unknown judgment '{name}' (the vocabulary "
                            f"has {', '.join(judgment_names)})")
    if source.kind in ("file", "pypi") and not source.files:
        raise doc.error("files", f"a '{source.kind}' source needs 'files'")
    if source.kind == "pypi" and source.artifact is None:
        raise doc.error("artifact", "a pypi source needs 'artifact' (package, version, sha256)")
    if source.kind == "hub" and source.hub is None:
        raise doc.error("hub", "a hub source needs 'hub' (path, and a pinned revision)")
    for key, kinds in _KINDS_OF_KEY.items():
        if key in source.model_fields_set and source.kind not in kinds:
            raise doc.error(key, f"a '{source.kind}' source has no '{key}' (it is for "
                            f"{' and '.join(kinds)} sources)")
    formats = {source.format} if source.format else {
        fmt for path in (e.path for e in source.file_entries)
        if (fmt := EXTENSION_FORMATS.get(Path(path).suffix.lower()))}
    for key, meant in (("records_key", {"json", "psychosafe", "yaml"}),
                       ("comment_prefix", {"csv"})):
        if key in source.model_fields_set and formats and not formats & meant:
            raise doc.error(key, f"'{key}' is read for {' and '.join(sorted(meant))} files "
                            f"only, and this source's are {', '.join(sorted(formats))}")
    return source


# keys that hold only for some kinds of source
_KINDS_OF_KEY = {"files": ("file", "pypi"), "artifact": ("pypi",), "hub": ("hub",),
                 "records_key": ("file", "pypi"), "comment_prefix": ("file", "pypi")}


def load_sources(directory: str | Path, labels: tuple[str, ...],
                 judgment_names: tuple[str, ...]) -> list[Source]:
    """Every `*.yaml` (or `*.yml`) source in a folder, sorted by name; names must be
    unique."""
    paths = sorted([*Path(directory).glob("*.yaml"), *Path(directory).glob("*.yml")])
    if not paths:
        raise CurationError("no source files (*.yaml, *.yml) found", file=str(directory))
    sources = [load_source(p, labels, judgment_names) for p in paths]
    seen: dict[str, str] = {}
    for source in sources:
        if source.name in seen:
            raise CurationError(f"source name '{source.name}' is also used by {seen[source.name]}",
                                file=source.config_path, field="name")
        seen[source.name] = source.config_path
    return sorted(sources, key=lambda s: s.name)
