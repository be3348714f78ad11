"""The judgment vocabulary (`schemas/judgments.yaml`): names, types and scales of what is
judged about a response, as data. Sources map their scores onto it; values are checked
against it."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
from pydantic import Field

from curation.core.config import ConfigModel, validate
from curation.core.yamlfile import YamlFile

_TRUE = {"1", "1.0", "true", "yes", "y"}
_FALSE = {"0", "0.0", "false", "no", "n"}


class Judgment(ConfigModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9_]*$")
    type: Literal["bool", "int", "float"]
    min: float | None = None
    max: float | None = None
    description: str

    def coerce(self, value: Any) -> bool | int | float:
        """The value as this judgment's type, or ValueError saying why not (CSV cells are
        text: "1", "0.25", "yes" are read as what they say)."""
        if isinstance(value, str):
            text = value.strip().lower()
            if self.type == "bool":
                if text in _TRUE | _FALSE:
                    return text in _TRUE
                raise ValueError(f"{value!r} is not a yes/no value")
            try:
                value = float(text)
            except ValueError:
                raise ValueError(f"{value!r} is not a number") from None
        if self.type == "bool":
            if isinstance(value, bool) or value in (0, 1):
                return bool(value)
            raise ValueError(f"{value!r} is not a yes/no value")
        if isinstance(value, bool) or not isinstance(value, int | float) or math.isnan(value):
            raise ValueError(f"{value!r} is not a number")
        if (self.min is not None and value < self.min) or (self.max is not None
                                                           and value > self.max):
            raise ValueError(f"{value} is off the scale {self.min:g}-{self.max:g}")
        if self.type == "int":
            if value != int(value):
                raise ValueError(f"{value} is not a whole number")
            return int(value)
        return float(value)

    def arrow_type(self) -> pa.DataType:
        return {"bool": pa.bool_(), "int": pa.int64(), "float": pa.float64()}[self.type]


class Vocabulary(ConfigModel):
    judgments: list[Judgment]

    def by_name(self) -> dict[str, Judgment]:
        return {j.name: j for j in self.judgments}

    def arrow_type(self) -> pa.StructType:
        """Judgments as a struct with one nullable field per name (unjudged: null)."""
        return pa.struct([(j.name, j.arrow_type()) for j in self.judgments])


def load_vocabulary(path: str | Path) -> Vocabulary:
    doc = YamlFile(path)
    vocabulary: Vocabulary = validate(doc, Vocabulary)
    names = [j.name for j in vocabulary.judgments]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise doc.error(f"judgments[{i}].name", f"judgment '{name}' is defined twice")
    return vocabulary
