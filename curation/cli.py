"""The `curate` command: wires stages to files. Stages live in their own modules."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from curation import __version__
from curation.dedup import DedupParams, dedup
from curation.errors import CurationError
from curation.fetch import cache_dir
from curation.ledger import compile_ledger, ledger_table, report_path
from curation.normalize import NormalizeParams, normalize, read_raw
from curation.params import load_params
from curation.pull import pull
from curation.sources import load_sources
from curation.tableio import StagedWrites
from curation.taxonomy import DEFAULT_TAXONOMY, load_taxonomy

PARAMS = click.option("--params", "params_path", default="params.yaml", show_default=True,
                      type=click.Path(dir_okay=False), help="Pipeline parameters file.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="curate")
def cli() -> None:
    """Build refusal benchmarks: pull, normalize, dedup, label, split and release."""


@cli.command("pull")
@PARAMS
@click.option("--sources", "sources_dir", type=click.Path(file_okay=False),
              help="Folder of source YAML files (default: params pull.sources_dir).")
@click.option("--taxonomy", default=str(DEFAULT_TAXONOMY), show_default=True,
              type=click.Path(dir_okay=False), help="Risk-domain taxonomy.")
@click.option("--out", "raw_dir", default="data/raw", show_default=True,
              type=click.Path(file_okay=False), help="Folder for data/raw/<source>.parquet.")
def pull_command(params_path: str, sources_dir: str | None, taxonomy: str, raw_dir: str) -> None:
    """Read every source into data/raw/<source>.parquet, with provenance and ids."""
    params = load_params(params_path, "pull")
    domains = load_taxonomy(taxonomy).domain_ids
    sources = load_sources(sources_dir or params.get("sources_dir", "sources"), domains)
    report = pull(sources, Path(raw_dir), cache_dir())
    for source, counts in report["by_source"].items():
        click.echo(f"{source}: {counts['kept']} rows ({counts['dropped']} dropped)")
    _summary(report)


@cli.command("normalize")
@PARAMS
@click.option("--raw", "raw_dir", default="data/raw", show_default=True,
              type=click.Path(file_okay=False), help="Folder of pulled sources.")
@click.option("--out", "output", default="data/normalized.parquet", show_default=True,
              type=click.Path(dir_okay=False), help="Normalized table.")
def normalize_command(params_path: str, raw_dir: str, output: str) -> None:
    """Clean texts, detect languages, filter; write data/normalized.parquet."""
    params = NormalizeParams.from_dict(load_params(params_path, "normalize"))
    report = normalize(read_raw(Path(raw_dir)), params, Path(output))
    click.echo("languages: " + ", ".join(f"{k} {v}" for k, v in report["languages"].items()))
    _summary(report)


@cli.command("dedup")
@PARAMS
@click.option("--input", "input_path", default="data/normalized.parquet", show_default=True,
              type=click.Path(dir_okay=False), help="Normalized table.")
def dedup_command(params_path: str, input_path: str) -> None:
    """Cluster exact and near duplicates; keep one representative per cluster.

    Writes data/deduped.parquet, data/dup_clusters.parquet and reports/dedup.json.
    """
    params = DedupParams.from_dict(load_params(params_path, "dedup"))
    if not Path(input_path).exists():
        raise CurationError("not found; run `curate normalize` first", file=input_path)
    report = dedup(Path(input_path), params)
    click.echo(f"clusters: {report['clusters']} (largest {report['largest_cluster']}), "
               f"{report['exact_duplicates']} exact and {report['near_duplicates']} near "
               "duplicates dropped")
    _summary(json.loads(report_path("dedup").read_text(encoding="utf-8")))


@cli.command("ledger")
@click.option("--out", "output", default="reports/ledger.json", show_default=True,
              type=click.Path(dir_okay=False), help="Where the compiled ledger goes.")
def ledger_command(output: str) -> None:
    """Check that every stage's rows add up, write reports/ledger.json, print the table."""
    ledger = compile_ledger()
    with StagedWrites() as out:
        out.json(ledger, output)
    rows = list(ledger_table(ledger))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                   .rstrip())


def _summary(report: dict) -> None:
    dropped = {o: sum(report[o].values()) for o in ("filtered", "quarantined", "duplicate")}
    click.echo(f"{report['stage']}: {report['rows_in']} in, {report['kept']} kept, "
               + ", ".join(f"{n} {o}" for o, n in dropped.items()))


def main() -> None:
    """Entry point: bad input ends in one line on stderr and exit code 1, no traceback."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except CurationError as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
