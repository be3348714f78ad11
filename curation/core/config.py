"""Typed configuration: `params.yaml` as pydantic models, validated once, in one place.

Every model forbids unknown keys (with a did-you-mean), takes no string for a number, a
list or a flag, and checks ranges; every error names the file actually read, the line and
the field. Stages receive the models, never raw dicts.
"""

from __future__ import annotations

import difflib
import re
import reprlib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal

from packaging.version import InvalidVersion, Version
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from curation.core.errors import CurationError
from curation.core.yamlfile import YamlFile


class ConfigModel(BaseModel):
    """Base of every config model: strict types, no unknown keys, immutable."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


def validate(doc: YamlFile, model: type[ConfigModel], data: Any = None,
             prefix: str = "") -> Any:
    """`data` (default: the whole document) as `model`; the first problem as a one-line
    error naming the file, line and field."""
    data = doc.data if data is None else data
    if not isinstance(data, dict):
        if not prefix:
            raise CurationError("must be a YAML mapping of keys to values", file=doc.path)
        raise doc.error(prefix, "must be a mapping of keys to values")
    try:
        return model.model_validate(data)
    except RecursionError:
        raise doc.error(prefix or model.__name__, "refers to itself (a YAML alias of its own "
                        "anchor)") from None
    except ValidationError as exc:
        errors = exc.errors()
        # An unknown key first: a misspelled key also makes the intended one "missing".
        # Then the deepest: of a union's members, the one that reached furthest explains best.
        first = next((e for e in errors if e["type"] == "extra_forbidden"),
                     max(errors, key=lambda e: len(e["loc"])))
        raise _located(doc, model, data, prefix, first) from None


def _located(doc: YamlFile, model: type[ConfigModel], data: Any, prefix: str,
             error: dict[str, Any]) -> CurationError:
    path = _data_path(data, error["loc"], error["type"] == "missing")
    field = ".".join(filter(None, [prefix, _dotted(path)])).replace(".[", "[")
    kind = error["type"]
    if kind == "extra_forbidden":
        known = _known_keys(model, path[:-1])
        close = difflib.get_close_matches(str(path[-1]), known, n=1)
        hint = f"; did you mean '{close[0]}'?" if close else (
            f" (expected one of: {', '.join(known)})" if known else "")
        message = f"unknown key{hint}"
    elif kind == "missing":
        message = "required key is missing"
    elif error.get("input", "") is None:
        message = "has no value (a key with nothing after it is null in YAML)"
    elif kind == "literal_error":
        message = (f"unknown value {_SHOWN.repr(error.get('input'))} (expected "
                   f"{error['ctx']['expected']})")
    else:
        value = error.get("input")
        shown = f" (got {type(value).__name__} {_SHOWN.repr(value)})" if not isinstance(
            value, dict | list) or kind.endswith("_type") else ""
        message = f"{error['msg'].removeprefix('Value error, ')}{shown}"
        if kind == "string_type" and isinstance(value, int | float):
            read_as = "true or false" if isinstance(value, bool) else "a number"
            message += f"; quote it, or YAML reads it as {read_as}"
    return doc.error(field or prefix, message)


def _data_path(data: Any, loc: tuple, missing: bool) -> list[str | int]:
    """The part of a pydantic error location that addresses the YAML document (a union's
    member names and validator tags are dropped)."""
    path: list[str | int] = []
    node = data
    for i, part in enumerate(loc):
        last = i == len(loc) - 1
        addresses = (isinstance(node, dict) and part in node) or (
            isinstance(node, list) and isinstance(part, int) and 0 <= part < len(node))
        if addresses:
            path.append(part)
            node = node[part]
        elif last and (missing or (isinstance(node, dict) and isinstance(part, str))):
            path.append(part)
    return path


def _dotted(path: list[str | int]) -> str:
    return ".".join(f"[{p}]" if isinstance(p, int) else str(p) for p in path)


def _known_keys(model: type[BaseModel], path: list[str | int]) -> list[str]:
    """The keys a (nested) model accepts at `path`, for did-you-mean hints."""
    current: Any = model
    for part in path:
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        if isinstance(part, int):
            continue
        info = current.model_fields.get(str(part))
        if info is None:
            return []
        current = _model_of(info.annotation)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _model_of(annotation: Any) -> Any:
    """The model an annotation holds: itself, or one inside `X | None`, `list[X]` and the
    like."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()):
        inner = _model_of(arg)
        if inner is not None:
            return inner
    return None


Fraction = Annotated[float, Field(gt=0.0, le=1.0)]
PositiveInt = Annotated[int, Field(ge=1)]
PositiveFloat = Annotated[float, Field(gt=0.0)]
# A wrong value as an error shows it: its start (an aliased YAML structure may hold
# millions of values, and a long text needs no more than its start to be recognised).
_SHOWN = reprlib.Repr()
_SHOWN.maxstring, _SHOWN.maxother, _SHOWN.maxlevel = 80, 80, 3
_SEMVER = re.compile(r"^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(-[0-9A-Za-z.-]+)?$")
_LANGUAGE = re.compile(r"^[a-z]{2,3}(-[a-z]{2,4})?$")


class PullParams(ConfigModel):
    sources_dir: str = "sources"
    data_roots: list[str] = []  # folders outside the project that sources may read
    batch_size: PositiveInt = 10_000  # items held in memory at a time (pull streams)


class NormalizeParams(ConfigModel):
    languages: list[str]         # keep items detected in these; empty keeps every language
    language_min_chars: Annotated[int, Field(ge=0)]  # shorter texts: "und"
    keep_undetermined: bool
    min_prompt_chars: Annotated[int, Field(ge=0)]
    max_prompt_chars: PositiveInt
    langdetect_seed: int
    language_first_pass: Literal["fasttext", "none"]  # none: langdetect reads every text
    fasttext_min_prob: Annotated[float, Field(ge=0, le=1)]  # below: langdetect decides
    language_max_chars: PositiveInt  # the prefix the detectors read
    num_proc: PositiveInt
    batch_size: PositiveInt

    @field_validator("languages")
    @classmethod
    def _codes(cls, languages: list[str]) -> list[str]:
        from curation.core.language import UNDETERMINED, langdetect_codes

        for code in languages:
            if not _LANGUAGE.match(code):
                raise ValueError(f"'{code}' is not a language code like 'en' or 'zh-cn'")
            if code == UNDETERMINED:
                raise ValueError(f"'{code}' (undetermined) is kept by keep_undetermined, not "
                                 "listed")
            if code not in langdetect_codes():  # it would filter every item out, silently
                close = sorted(c for c in langdetect_codes() if c.startswith(code + "-"))
                raise ValueError(f"'{code}' is not a language langdetect names" + (
                    f" (it names {' and '.join(close)})" if close else ""))
        return languages

    @model_validator(mode="after")
    def _lengths(self) -> NormalizeParams:
        if self.min_prompt_chars > self.max_prompt_chars:
            raise ValueError("min_prompt_chars is above max_prompt_chars")
        return self


class DedupParams(ConfigModel):
    include_response: bool       # judge duplicates on prompt + response, not the prompt alone
    ngram: PositiveInt
    char_ngram: PositiveInt
    num_perm: Annotated[int, Field(ge=2)]
    threshold: Fraction
    seed: int
    false_negative_weight: Annotated[float, Field(gt=0.0, lt=1.0)]
    num_proc: PositiveInt
    batch_size: PositiveInt
    max_bucket_size: PositiveInt
    sketch_memory_mb: Annotated[int, Field(ge=0)] = 256  # sketches held before they spill
    source_priority: list[str] = []


class PypiModel(ConfigModel):
    """A model shipped inside a pinned PyPI wheel: the zip archive (or folder) at `member`."""

    package: Annotated[str, Field(min_length=1)]
    version: Annotated[str, Field(min_length=1)]
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    member: Annotated[str, Field(min_length=1)]  # its path inside the wheel


def _exactly_one(model: ConfigModel, keys: tuple[str, str, str]) -> None:
    """A model is given one way: exactly one of `keys` is set."""
    given = [k for k in keys if getattr(model, k) is not None]
    if len(given) != 1:
        raise ValueError(f"give exactly one of {keys[0]}, {keys[1]} or {keys[2]}"
                         + (f" (got {', '.join(given)})" if given else ""))


class ModelParams(ConfigModel):
    """A sentence-transformers model: exactly one of a Hub id, a local folder or a pinned
    PyPI artifact."""

    hub: str | None = None        # a Hub model id, like sentence-transformers/all-MiniLM-L6-v2
    revision: str | None = None   # the Hub commit or tag to pin it to
    folder: str | None = None     # a local sentence-transformers folder
    pypi: PypiModel | None = None

    @model_validator(mode="after")
    def _one(self) -> ModelParams:
        _exactly_one(self, ("hub", "folder", "pypi"))
        if self.revision is not None and self.hub is None:
            raise ValueError("revision pins a hub model; there is no hub key")
        return self


class ContaminationParams(ConfigModel):
    """How close to a reference item an item may be before it is removed."""

    cosine: Fraction
    jaccard: Fraction


class FamiliesParams(ConfigModel):
    model: ModelParams
    device: Literal["auto", "cpu", "cuda", "mps"]  # auto: a GPU when present, else the CPU
    batch_size: PositiveInt        # texts per encoding batch, at most
    batch_tokens: PositiveInt      # tokens per encoding batch (fewer texts when long)
    num_threads: PositiveInt       # CPU threads for encoding and the neighbour search
    cosine: Fraction               # embeddings this similar are one family
    jaccard: Fraction              # MinHash Jaccard of word 3-grams that also joins a family
    neighbours: PositiveInt        # nearest neighbours searched per item
    max_family_size: Annotated[int, Field(ge=2)]  # similarity links stop growing a family here
    exact_search_limit: PositiveInt  # up to this many items, exact search; beyond, an IVF index
    ivf_probes: PositiveInt        # IVF cells searched per query (more: better recall, slower)
    paraphrases: Literal["keep", "remove"]  # remove: one item per family and behaviour stays
    contamination: ContaminationParams


class SuggestParams(ConfigModel):
    regularization: PositiveFloat  # inverse strength of the logistic regression's L2 penalty
    folds: Annotated[int, Field(ge=2)]  # out-of-fold predictions (families kept whole)
    seed: int


PiiType = Literal["person", "email", "phone", "address", "personal_url", "handle"]


class NerModelParams(ConfigModel):
    """A spaCy pipeline that finds person names: exactly one of an installed package (what
    `python -m spacy download` installs), a local folder or a pinned PyPI artifact."""

    package: str | None = None    # an installed spaCy model package, like en_core_web_lg
    folder: str | None = None     # a local spaCy pipeline folder (with config.cfg)
    pypi: PypiModel | None = None

    @model_validator(mode="after")
    def _one(self) -> NerModelParams:
        _exactly_one(self, ("package", "folder", "pypi"))
        return self


class RedactParams(ConfigModel):
    """Personal data in released texts: what to look for, and whether to replace it."""

    mode: Literal["redact", "flag"]  # flag: keep texts verbatim, list the spans in `pii`
    types: list[PiiType]             # what to look for (an empty list looks for nothing)
    model: NerModelParams
    phone_regions: list[Annotated[str, Field(pattern=r"^[A-Z]{2}$")]]  # phonenumbers regions
    allow: list[Annotated[str, Field(min_length=1)]] = []  # never redacted, besides the
                                                           #   taxonomy's referral resources
    batch_size: PositiveInt          # texts per NER batch
    num_proc: PositiveInt            # worker processes for detection (local engine)

    @field_validator("phone_regions")
    @classmethod
    def _known_regions(cls, regions: list[str]) -> list[str]:
        import phonenumbers  # only when redact params are read

        unknown = [r for r in regions if r not in phonenumbers.SUPPORTED_REGIONS]
        if unknown:
            raise ValueError(f"unknown phone region '{unknown[0]}': phonenumbers takes "
                             "ISO 3166 codes (GB, not UK)")
        return regions


class LabelParams(ConfigModel):
    min_submitted: PositiveInt   # submitted answers an item needs before its majority counts
    out_of_scope_label: Annotated[str, Field(min_length=1)]
    accept_model_above: Fraction | None = None  # accept model suggestions at this score or
                                                #   more (None: people's labels only)


SplitSize = StrictInt | StrictFloat


class SplitParams(ConfigModel):
    seed: int
    validation: SplitSize        # per domain: a fraction in (0, 1) or a count >= 1
    test: SplitSize
    reserved_ids: list[str] = []

    @field_validator("validation", "test")
    @classmethod
    def _size(cls, size: int | float) -> int | float:
        if (isinstance(size, int) and size < 1) or (isinstance(size, float)
                                                     and not 0.0 < size < 1.0):
            raise ValueError(f"must be a fraction in (0, 1) or a count >= 1, not {size!r}")
        return size


GateField = Literal["text", "checkbox", "date_picker", "country"]


class GateParams(ConfigModel):
    """The Hub's access gate (the card's `extra_gated_*` fields): harmful content is not
    one click away."""

    enabled: bool
    prompt: Annotated[str, Field(min_length=1)]
    fields: dict[str, GateField] = {}


class ReleaseParams(ConfigModel):
    version: str                 # semver; a released version is immutable
    pretty_name: Annotated[str, Field(min_length=1)]
    description: str
    hub_repo: str | None = None  # the Hub dataset repository it is published to
    gated: GateParams

    @field_validator("version")
    @classmethod
    def _semver(cls, version: str) -> str:
        try:
            Version(version)
        except InvalidVersion:
            version = "not semver"
        if not _SEMVER.match(version):  # +build would make 1.2.0+a and 1.2.0+b one version
            raise ValueError("must be semver without build metadata, like 1.2.0 or 1.2.0-rc.1")
        return version

    @field_validator("description")
    @classmethod
    def _strip(cls, description: str) -> str:
        return description.strip()

    @field_validator("hub_repo")
    @classmethod
    def _repo(cls, repo: str | None) -> str | None:
        return repo or None


class AnnotateParams(ConfigModel):
    dataset: Annotated[str, Field(min_length=1)]
    workspace: Annotated[str, Field(min_length=1)]
    refusal_rubric: bool
    batch_size: Annotated[int, Field(ge=1, le=100)]  # Argilla caps a request at 100


class EngineParams(ConfigModel):
    """Where language ID, MinHash signatures and embeddings run (outputs are the same)."""

    kind: Literal["local", "ray"] = "local"
    address: str | None = None  # ray: "auto", "ray://host:10001", a GCS address; none: local

    @model_validator(mode="after")
    def _address_for_ray(self) -> EngineParams:
        if self.address is not None and self.kind != "ray":
            raise ValueError("address is for the ray engine (kind: ray)")
        return self


class Params(ConfigModel):
    """The whole of `params.yaml`."""

    engine: EngineParams = EngineParams()
    pull: PullParams = PullParams()
    normalize: NormalizeParams
    dedup: DedupParams
    families: FamiliesParams
    suggest: SuggestParams
    label: LabelParams
    redact: RedactParams
    split: SplitParams
    release: ReleaseParams
    annotate: AnnotateParams


# Params that set how a build runs, not what it makes (the engine section is all of this
# kind): the stage tables and the release are byte-identical whatever they are (the stage
# tests vary them); a dropped-rows table may list the same rows in another order.
RUN_ONLY = {"pull": ("batch_size",), "normalize": ("num_proc", "batch_size"),
            "dedup": ("num_proc", "batch_size", "sketch_memory_mb"),
            "redact": ("num_proc",), "annotate": ("batch_size",)}


@dataclass(frozen=True)
class ParamsFile:
    """The validated params, and the file they came from (for errors found later)."""

    doc: YamlFile
    params: Params

    @property
    def path(self) -> str:
        return self.doc.path

    @cached_property
    def raw(self) -> dict[str, Any]:
        """The file as written."""
        return self.doc.data

    @property
    def provenance(self) -> dict[str, Any]:
        """The file as written, without `RUN_ONLY` (the engine, worker counts, batch sizes
        of per-text work): recorded in release manifests, so that a release's bytes do not
        depend on the machine that built it."""
        return {section: ({k: v for k, v in values.items()
                           if k not in RUN_ONLY.get(section, ())}
                          if isinstance(values, dict) else values)
                for section, values in self.raw.items() if section != "engine"}

    def error(self, field: str, message: str) -> CurationError:
        return self.doc.error(field, message)


def load_params(path: str | Path) -> ParamsFile:
    doc = YamlFile(path)
    return ParamsFile(doc, validate(doc, Params))
