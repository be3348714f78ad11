"""The risk-domain taxonomy: a data file, so another taxonomy is a file swap."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from curation.core.yamlfile import YamlFile


@dataclass(frozen=True)
class Taxonomy:
    name: str
    version: str
    domains: tuple[dict, ...]
    path: str

    @property
    def domain_ids(self) -> tuple[str, ...]:
        return tuple(d["id"] for d in self.domains)


def load_taxonomy(path: str | Path) -> Taxonomy:
    """Read and check the taxonomy: unique domain ids, each with a title and definition."""
    doc = YamlFile(path)
    data = doc.data if isinstance(doc.data, dict) else {}
    domains = data.get("domains")
    if not isinstance(domains, list) or not domains:
        raise doc.error("domains", "must be a non-empty list of domains")
    seen: set[str] = set()
    for i, domain in enumerate(domains):
        for key in ("id", "title", "definition"):
            if not isinstance(domain, dict) or not str(domain.get(key) or "").strip():
                raise doc.error(f"domains[{i}].{key}", f"domain {i + 1} needs a '{key}'")
        if domain["id"] in seen:
            raise doc.error(f"domains[{i}].id", f"duplicate domain id '{domain['id']}'")
        seen.add(domain["id"])
    return Taxonomy(str(data.get("name", "")), str(data.get("version", "")),
                    tuple(domains), str(path))
