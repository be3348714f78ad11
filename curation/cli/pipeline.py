"""The pipeline's stage commands (what `dvc.yaml` runs): each one builds the context, calls
its stage's `run` and prints the result."""

from __future__ import annotations

import importlib

import click

from curation.cli.common import config_options, context, ledger_line, print_table
from curation.core.paths import Paths

STAGES = {
    "pull": "Read every source into data/raw/<source>.parquet, with provenance and ids.",
    "normalize": "Clean texts, detect languages, filter; write data/normalized.parquet.",
    "dedup": "Cluster exact and near duplicates; keep one representative per cluster.\n\n"
             "Writes data/deduped.parquet, data/dup_clusters.parquet, data/signatures.parquet "
             "and reports/dedup.json.",
    "families": "Embed prompts; remove items too close to a reference set; group paraphrases.\n\n"
                "Writes data/families.parquet (with family_id), data/embeddings.parquet and "
                "reports/families.json; embeddings are cached by text and model.",
    "suggest": "Suggest a domain (or out of scope) with a calibrated score for every item.\n\n"
               "Learns from annotations and category maps over the families' embeddings; "
               "writes data/suggestions.parquet and reports/suggest.json (macro-F1 on "
               "held-out sources, reliability of the score).",
    "label": "Give each item one domain (annotators, then category maps, then suggestions "
             "above label.accept_model_above if set).\n\n"
             "Writes data/labeled.parquet and reports/labels.json.",
    "redact": "Find personal data in the labeled items' texts; replace it (or, with "
              "redact.mode flag, list it).\n\n"
              "Writes data/redacted.parquet (findings in `pii`) and reports/redact.json; "
              "the taxonomy's referral resources are never redacted.",
    "split": "Build the default and held-out-domain configurations under data/splits/.",
}


def run_stage(name: str, params_path: str, sources_dir: str | None, taxonomy: str) -> None:
    stage = importlib.import_module(f"curation.stages.{name}")
    result = stage.run(context(params_path, sources_dir, taxonomy))
    for line in result.lines:
        click.echo(line)
    if result.ledger is not None:
        click.echo(ledger_line(result.ledger))


def stage_command(name: str, help_text: str) -> click.Command:
    @config_options
    def command(params_path: str, sources_dir: str | None, taxonomy: str) -> None:
        run_stage(name, params_path, sources_dir, taxonomy)

    return click.command(name, help=help_text)(command)


@click.command("ledger")
def ledger_command() -> None:
    """Check that every stage's rows add up, write reports/ledger.json, print the table."""
    from curation.core.ledger import ledger_table, write_ledger

    print_table(list(ledger_table(write_ledger(Paths()))))


def register(group: click.Group) -> None:
    for name, help_text in STAGES.items():
        group.add_command(stage_command(name, help_text))
    group.add_command(ledger_command)
