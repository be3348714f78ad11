"""`curate annotate`: push items to Argilla, pull the answers, see progress."""

from __future__ import annotations

from typing import Any

import click

from curation.cli.common import config_options, context, print_table
from curation.core.paths import Paths

API_URL = click.option("--api-url", envvar="ARGILLA_API_URL", show_envvar=True,
                       help="Argilla server URL (default: the local server).")
API_KEY = click.option("--api-key", envvar="ARGILLA_API_KEY", show_envvar=True,
                       help="Argilla API key (default: the local server's owner key).")


@click.group("annotate")
def annotate_group() -> None:
    """Label items in Argilla: push them, pull the answers, see progress.

    Commands talk to ARGILLA_API_URL with ARGILLA_API_KEY (or --api-url / --api-key);
    without them, to the local server of `curate argilla serve`.
    """


def _setup(params_path: str, sources_dir: str | None, taxonomy: str, api_url: str | None,
           api_key: str | None) -> tuple[Any, Any, Any]:
    """The stage context, the annotation config and a connected client."""
    from curation.annotation.client import client_for
    from curation.annotation.settings import AnnotationConfig

    ctx = context(params_path, sources_dir, taxonomy)
    config = AnnotationConfig.of(ctx.params)
    return ctx, config, client_for(api_url, api_key, ctx.paths.argilla_home)


@annotate_group.command("push")
@config_options
@API_URL
@API_KEY
@click.option("--all", "everything", is_flag=True,
              help="Push every deduplicated item, not only those that still need a label.")
def annotate_push(params_path: str, sources_dir: str | None, taxonomy: str,
                  api_url: str | None, api_key: str | None, everything: bool) -> None:
    """Create or update the Argilla dataset and its records (keyed by item id)."""
    from curation.annotation.push import items_to_push, push
    from curation.sources.spec import load_sources
    from curation.stages.suggest import agent

    table = items_to_push(Paths(), everything)
    ctx, config, client = _setup(params_path, sources_dir, taxonomy, api_url, api_key)
    sources = load_sources(ctx.sources_folder, ctx.category_labels,
                           tuple(ctx.vocabulary.by_name()))
    counts = push(client, table, sources, ctx.taxonomy, config,
                  agent(ctx.params.families.model))
    click.echo(f"pushed {counts['pushed']} records ({counts['suggested_by_model']} with the "
               f"model's suggestion and score, {counts['suggested_by_category_map']} with a "
               f"category map's); the dataset '{config.dataset}' has "
               f"{counts['records_in_dataset']}")
    click.echo(f"annotate, least sure suggestion first: {counts['url']}")
    if "responses_pushed" in counts:
        click.echo(f"pushed {counts['responses_pushed']} responses; the dataset "
                   f"'{config.responses_dataset}' has {counts['records_in_responses_dataset']}")


@annotate_group.command("pull")
@config_options
@API_URL
@API_KEY
def annotate_pull(params_path: str, sources_dir: str | None, taxonomy: str,
                  api_url: str | None, api_key: str | None) -> None:
    """Write annotations/<dataset>.parquet and reports/annotation.json (agreement)."""
    from curation.annotation.pull import pull

    ctx, config, client = _setup(params_path, sources_dir, taxonomy, api_url, api_key)
    report = pull(client, ctx.taxonomy, config, ctx.paths.annotations_dir,
                  ctx.paths.report("annotation"))
    if not report["written"]:
        click.echo(f"no answers yet in '{config.dataset}' or '{config.responses_dataset}': "
                   "nothing written (annotations/ is unchanged, so dvc reruns nothing)")
        return
    click.echo(f"{report['records_answered']} records answered; responses: "
               + ", ".join(f"{k} {v}" for k, v in report["responses"].items()))
    click.echo(f"majority labels: {sum(report['majority_labels'].values())}; to adjudicate: "
               f"{len(report['adjudication'])}")
    for figures in report["agreement"]:
        click.echo(f"{figures['question']}: Krippendorff's alpha "
                   f"{figures['krippendorff_alpha']} ({figures['level']})")


@annotate_group.command("status")
@config_options
@API_URL
@API_KEY
def annotate_status(params_path: str, sources_dir: str | None, taxonomy: str,
                    api_url: str | None, api_key: str | None) -> None:
    """Progress per dataset, per annotator and per domain."""
    from curation.annotation.pull import dataset_progress

    _, config, client = _setup(params_path, sources_dir, taxonomy, api_url, api_key)
    per_dataset, per_annotator, per_domain = dataset_progress(client, config)
    print_table(per_dataset)
    click.echo()
    print_table(per_annotator)
    click.echo()
    print_table(per_domain)
