"""The one shape every stage has: `run(context) -> StageResult`.

A stage reads its inputs from `context.paths`, takes its typed params from
`context.params`, writes every output through one `StagedWrites` (all or nothing), keeps
one `StageLedger`, and returns its ledger counts, its report and a few lines for people.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd

from curation.core.config import Params, ParamsFile
from curation.core.judgments import Vocabulary, load_vocabulary
from curation.core.paths import Paths
from curation.core.schemas import load_schema
from curation.core.tableio import read_input, read_report
from curation.core.taxonomy import Taxonomy, load_taxonomy


@dataclass
class Context:
    """What a stage runs with: the project's paths and its validated configuration.

    The taxonomy is loaded (and validated) on first use, so a stage that does not use it
    is not stopped by it; stages that read sources load them from `sources_folder`.
    """

    paths: Paths
    params_file: ParamsFile
    sources_dir: Path | None = None   # default: params pull.sources_dir
    taxonomy_path: Path | None = None  # default: schemas/taxonomy.yaml

    @property
    def params(self) -> Params:
        return self.params_file.params

    @cached_property
    def taxonomy(self) -> Taxonomy:
        return load_taxonomy(self.taxonomy_path or self.paths.taxonomy)

    @cached_property
    def vocabulary(self) -> Vocabulary:
        return load_vocabulary(self.paths.schemas_dir / "judgments.yaml")

    @property
    def category_labels(self) -> tuple[str, ...]:
        """What a category map or an annotator may give an item: a domain, or out of scope
        (a label of its own: a domain's name would drop that domain's items)."""
        out_of_scope = self.params.label.out_of_scope_label
        if out_of_scope in self.taxonomy.domain_ids:
            raise self.params_file.error("label.out_of_scope_label", f"'{out_of_scope}' is a "
                                         "domain of the taxonomy; name out of scope otherwise")
        return (*self.taxonomy.domain_ids, out_of_scope)

    @property
    def sources_folder(self) -> Path:
        return self.sources_dir or self.paths.root / self.params.pull.sources_dir

    def input_table(self, path: Path, previous_stage: str, schema: str,
                    only: list[str] | None = None) -> pd.DataFrame:
        """A table an earlier stage wrote, checked against that stage's schema (`schemas/
        <schema>.yaml`): missing, corrupt or off-contract input is one line. `only`: the
        columns to read (a stage that needs no texts does not hold them)."""
        return read_input(path, previous_stage, load_schema(schema).columns, only)

    def input_report(self, name: str, previous_stage: str) -> dict[str, Any]:
        return read_report(self.paths.report(name), previous_stage)


@dataclass(frozen=True)
class StageResult:
    """What a stage returns: its ledger counts (None for stages that drop nothing by
    design, like release), its report, and a short summary for people."""

    stage: str
    ledger: dict[str, Any] | None
    report: dict[str, Any]
    lines: list[str] = field(default_factory=list)
