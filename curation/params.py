"""`params.yaml`: every tunable number of the pipeline, one section per stage."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from curation.errors import CurationError
from curation.yamlfile import YamlFile


def load_params(path: str | Path, section: str) -> dict[str, Any]:
    """One stage's section of the params file."""
    doc = YamlFile(path)
    params = doc.data.get(section) if isinstance(doc.data, dict) else None
    if not isinstance(params, dict):
        raise CurationError(f"no '{section}' section", file=str(path), field=section)
    return params
