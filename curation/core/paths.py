"""Where every artifact of a project lives: the one place paths under `data/`, `reports/`
and `releases/` are spelled."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

CACHE_ENV = "CURATION_CACHE_DIR"  # lets builds and tests share one download cache
SPLITS = ("train", "validation", "test")  # data/splits/<config>/<split>.parquet


@dataclass(frozen=True)
class Paths:
    """The layout of a project folder (`root`: where `dvc.yaml` and `params.yaml` are)."""

    root: Path = Path(".")

    @property
    def data(self) -> Path:
        return self.root / "data"

    @property
    def reports(self) -> Path:
        return self.root / "reports"

    @property
    def raw_dir(self) -> Path:
        return self.data / "raw"

    @property
    def references_dir(self) -> Path:
        """Reference (evaluation) sets: pulled like sources, never released."""
        return self.data / "references"

    @property
    def normalized(self) -> Path:
        return self.data / "normalized.parquet"

    @property
    def deduped(self) -> Path:
        return self.data / "deduped.parquet"

    @property
    def dup_clusters(self) -> Path:
        return self.data / "dup_clusters.parquet"

    @property
    def signatures(self) -> Path:
        return self.data / "signatures.parquet"

    @property
    def families(self) -> Path:
        return self.data / "families.parquet"

    @property
    def embeddings(self) -> Path:
        return self.data / "embeddings.parquet"

    @property
    def neighbours(self) -> Path:
        return self.data / "neighbours.parquet"

    def metrics(self, stage: str) -> Path:
        """A stage's numbers for dvc metrics (git-tracked, small)."""
        return self.root / "metrics" / f"{stage}.json"

    def plot(self, name: str) -> Path:
        """A table for dvc plots (git-tracked, small)."""
        return self.root / "plots" / f"{name}.csv"

    @property
    def released(self) -> Path:
        """The versions that were released (frozen), with their content fingerprints."""
        return self.root / "released.yaml"

    @property
    def suggestions(self) -> Path:
        return self.data / "suggestions.parquet"

    @property
    def labeled(self) -> Path:
        return self.data / "labeled.parquet"

    @property
    def redacted(self) -> Path:
        return self.data / "redacted.parquet"

    @property
    def splits_dir(self) -> Path:
        return self.data / "splits"

    def dropped(self, stage: str) -> Path:
        return self.data / "dropped" / f"{stage}.parquet"

    def stage_ledger(self, stage: str) -> Path:
        return self.reports / "ledger" / f"{stage}.json"

    @property
    def ledger(self) -> Path:
        return self.reports / "ledger.json"

    def report(self, name: str) -> Path:
        """`reports/<name>.json`: sources, dedup, labels, splits, annotation."""
        return self.reports / f"{name}.json"

    @property
    def annotations_dir(self) -> Path:
        return self.root / "annotations"

    @property
    def releases_dir(self) -> Path:
        return self.root / "releases"

    @property
    def schemas_dir(self) -> Path:
        return self.root / "schemas"

    @property
    def taxonomy(self) -> Path:
        return self.schemas_dir / "taxonomy.yaml"

    @property
    def argilla_home(self) -> Path:
        return self.data / "argilla"

    @property
    def cache(self) -> Path:
        """Downloaded artifacts; `CURATION_CACHE_DIR` moves them."""
        return Path(os.environ.get(CACHE_ENV) or self.data / "cache")
