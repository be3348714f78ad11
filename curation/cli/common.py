"""Options and printing shared by the command groups."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click

from curation.core.paths import Paths

# Heavy modules (pydantic, pandas, the stages) are imported where a command needs them, so
# `curate --help` and every dvc stage's start stay fast.

PARAMS = click.option("--params", "params_path", default="params.yaml", show_default=True,
                      type=click.Path(dir_okay=False), help="Pipeline parameters file.")
SOURCES = click.option("--sources", "sources_dir", type=click.Path(file_okay=False),
                       help="Folder of source YAML files (default: params pull.sources_dir).")
TAXONOMY = click.option("--taxonomy", default=str(Paths().taxonomy), show_default=True,
                        type=click.Path(dir_okay=False), help="Risk-domain taxonomy.")


def config_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """--params, --sources and --taxonomy, the options every configured command takes."""
    return PARAMS(SOURCES(TAXONOMY(command)))


def context(params_path: str, sources_dir: str | None, taxonomy: str) -> Any:
    """The stage context for the current project folder (params validated here, once)."""
    from curation.core.config import load_params
    from curation.stages.base import Context

    return Context(Paths(), load_params(params_path),
                   Path(sources_dir) if sources_dir else None, Path(taxonomy))


def print_table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                   .rstrip())


def ledger_line(summary: dict[str, Any]) -> str:
    from curation.core.ledger import OUTCOMES

    dropped = {o: sum(summary[o].values()) for o in OUTCOMES}
    return (f"{summary['stage']}: {summary['rows_in']} in, {summary['kept']} kept, "
            + ", ".join(f"{n} {o}" for o, n in dropped.items()))
