"""The `curate` command: wires stages to files. Stages live in their own modules."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import click
import pandas as pd
from huggingface_hub import HfApi, get_token

from curation import __version__, argilla_local
from curation.annotate import (
    AnnotateParams,
    connect,
    fetch_answers,
    pull,
    push,
    record_count,
    status_tables,
)
from curation.changelog import diff, diff_markdown, labels
from curation.dedup import DedupParams, dedup
from curation.errors import CurationError
from curation.fetch import cache_dir
from curation.label import LabelParams, label, read_annotations
from curation.ledger import compile_ledger, ledger_table, report_path
from curation.normalize import NormalizeParams, normalize, read_raw
from curation.params import load_params
from curation.publish import plan_publish, publish
from curation.pull import pull as pull_stage
from curation.release import ReleaseInputs, ReleaseParams, read_splits, release
from curation.sources import Source, load_sources
from curation.split import SplitParams, split
from curation.tableio import StagedWrites, read_parquet
from curation.taxonomy import DEFAULT_TAXONOMY, load_taxonomy
from curation.yamlfile import YamlFile

PARAMS = click.option("--params", "params_path", default="params.yaml", show_default=True,
                      type=click.Path(dir_okay=False), help="Pipeline parameters file.")
SOURCES = click.option("--sources", "sources_dir", type=click.Path(file_okay=False),
                       help="Folder of source YAML files (default: params pull.sources_dir).")
ARGILLA_HOME = Path("data/argilla")
TAXONOMY = click.option("--taxonomy", default=str(DEFAULT_TAXONOMY), show_default=True,
                        type=click.Path(dir_okay=False), help="Risk-domain taxonomy.")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="curate")
def cli() -> None:
    """Build refusal benchmarks: pull, normalize, dedup, label, split and release."""


@cli.command("pull")
@PARAMS
@SOURCES
@TAXONOMY
@click.option("--out", "raw_dir", default="data/raw", show_default=True,
              type=click.Path(file_okay=False), help="Folder for data/raw/<source>.parquet.")
def pull_command(params_path: str, sources_dir: str | None, taxonomy: str, raw_dir: str) -> None:
    """Read every source into data/raw/<source>.parquet, with provenance and ids."""
    domains = load_taxonomy(taxonomy).domain_ids
    sources = _sources(params_path, sources_dir, domains)
    report = pull_stage(sources, Path(raw_dir), cache_dir())
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


@cli.command("label")
@PARAMS
@SOURCES
@TAXONOMY
@click.option("--annotations", "annotations_dir", default="annotations", show_default=True,
              type=click.Path(file_okay=False), help="Folder of annotation snapshots.")
def label_command(params_path: str, sources_dir: str | None, taxonomy: str,
                  annotations_dir: str) -> None:
    """Give each item one domain (annotators first, then category maps).

    Writes data/labeled.parquet and reports/labels.json.
    """
    params = LabelParams.from_dict(load_params(params_path, "label"))
    domains = load_taxonomy(taxonomy).domain_ids
    sources = _sources(params_path, sources_dir, domains)
    annotations = read_annotations(Path(annotations_dir),
                                   {*domains, params.out_of_scope_label})
    table = _read_input("data/deduped.parquet", "dedup")
    report = label(table, sources, annotations, domains, params)
    click.echo("domains: " + ", ".join(f"{d} {sum(v.values())}"
                                       for d, v in report["by_domain"].items()))
    click.echo(f"disagreements between annotators and category maps: "
               f"{len(report['disagreements'])}")
    _summary(json.loads(report_path("label").read_text(encoding="utf-8")))


@cli.command("split")
@PARAMS
@TAXONOMY
def split_command(params_path: str, taxonomy: str) -> None:
    """Build the default and held-out-domain configurations under data/splits/."""
    params = SplitParams.from_dict(load_params(params_path, "split"))
    dedup_params = DedupParams.from_dict(load_params(params_path, "dedup"))
    domains = load_taxonomy(taxonomy).domain_ids
    report = split(_read_input("data/labeled.parquet", "label"), domains, params, dedup_params)
    for config, figures in report["configs"].items():
        rows = figures["rows"]
        click.echo(f"{config}: train {rows['train']}, validation {rows['validation']}, "
                   f"test {rows['test']}; max cross-split similarity "
                   f"{figures['max_cross_split_similarity']}")
    _summary(json.loads(report_path("split").read_text(encoding="utf-8")))


RELEASES = click.option("--releases", "releases_dir", default="releases", show_default=True,
                        type=click.Path(file_okay=False), help="Folder of released versions.")


@cli.group("release", invoke_without_command=True)
@PARAMS
@TAXONOMY
@RELEASES
@click.pass_context
def release_command(ctx: click.Context, params_path: str, taxonomy: str,
                    releases_dir: str) -> None:
    """Write releases/<version>/: data, dataset card, chart, manifest, schemas.

    With a subcommand: publish a release to the Hub, or compare two releases.
    """
    if ctx.invoked_subcommand is not None:
        return
    params = ReleaseParams.from_dict(load_params(params_path, "release"))
    inputs = ReleaseInputs(
        splits=read_splits(Path("data/splits")), taxonomy=load_taxonomy(taxonomy),
        schema_dir=Path("schemas"), sources=_read_report("reports/sources.json", "pull"),
        dedup=_read_report("reports/dedup.json", "dedup"),
        labels=_read_report("reports/labels.json", "label"),
        split_report=_read_report("reports/splits.json", "split"),
        params=YamlFile(params_path).data)
    target = release(inputs, params, Path(releases_dir))
    click.echo(f"release: {target}")
    click.echo(f'load it: datasets.load_dataset("{target}", "heldout-'
               f'{inputs.taxonomy.domain_ids[0]}")')


@release_command.command("publish")
@click.argument("version")
@click.option("--repo", "repo_id", required=True, help="Hub dataset repository, org/name.")
@click.option("--private", is_flag=True, help="Create the repository as private.")
@click.option("--yes", is_flag=True, help="Really upload (default: print the plan only).")
@RELEASES
def release_publish(version: str, repo_id: str, private: bool, yes: bool,
                    releases_dir: str) -> None:
    """Publish releases/<version> to a Hub dataset repo, tagged v<version>.

    A dry run by default: it prints the plan and needs no token. With --yes it uploads in
    one commit and tags it; the token comes from HF_TOKEN or `hf auth login`.
    """
    folder = Path(releases_dir) / version
    plan = plan_publish(folder, repo_id, private)
    click.echo(f"repository: {plan.repo_id} (dataset{', private' if plan.private else ''})")
    click.echo(f"tag:        {plan.tag}")
    click.echo(f"commit:     {plan.commit_message}")
    _print_table([["file", "bytes", "sha256"]]
                 + [[f.path, str(f.size), f.sha256] for f in plan.files])
    if not yes:
        click.echo("dry run: nothing sent (add --yes to publish)")
        return
    token = get_token()
    if not token:
        raise CurationError("no Hugging Face token: set HF_TOKEN or run `hf auth login`",
                            field="HF_TOKEN")
    click.echo(publish(HfApi(token=token), plan, folder))


@release_command.command("diff")
@click.argument("before")
@click.argument("after")
@RELEASES
def release_diff(before: str, after: str, releases_dir: str) -> None:
    """Ids added, removed and relabelled from release BEFORE to release AFTER."""
    root = Path(releases_dir)
    change = diff(labels(root / before), labels(root / after))
    click.echo(diff_markdown(before, after, change, max_ids=1_000_000))


@cli.group("argilla")
def argilla_group() -> None:
    """A local Argilla server for curators without a deployment (and for the tests)."""


HOME = click.option("--home", default=str(ARGILLA_HOME), show_default=True,
                    type=click.Path(file_okay=False), help="Server data folder (SQLite, logs).")


@argilla_group.command("serve")
@HOME
@click.option("--port", type=int, help="Port on 127.0.0.1 (default: a free one).")
@click.option("--detach", is_flag=True, help="Leave the server running and return.")
def argilla_serve(home: str, port: int | None, detach: bool) -> None:
    """Start the real argilla-server (own virtualenv, SQLite, local Redis) on 127.0.0.1.

    Prints the URL and the owner's credentials; stops cleanly on Ctrl-C unless --detach.
    """
    info = argilla_local.start(Path(home), port, progress=lambda line: click.echo(line,
                                                                                 err=True))
    click.echo(f"Argilla is up at {info.url}")
    click.echo(f"  sign in as {info.username} / {info.password}")
    click.echo(f"  API key: {info.api_key} (also in {Path(home) / 'server.json'})")
    if detach:
        click.echo("  stop it with: curate argilla stop")
        return
    click.echo("Press Ctrl-C to stop.")
    try:
        while argilla_local.status(Path(home)) is not None:
            time.sleep(1)
        raise CurationError("the server stopped; see its logs", file=str(Path(home) / "logs"))
    except KeyboardInterrupt:
        argilla_local.stop(Path(home))
        click.echo("stopped")


@argilla_group.command("stop")
@HOME
def argilla_stop(home: str) -> None:
    """Stop the local server started with --detach."""
    click.echo("stopped" if argilla_local.stop(Path(home)) else "not running")


@argilla_group.command("status")
@HOME
def argilla_status(home: str) -> None:
    """Say whether the local server runs, and where."""
    info = argilla_local.status(Path(home))
    if info is None:
        click.echo("not running")
        sys.exit(3)
    click.echo(f"running at {info.url} (redis: {info.redis_kind}); "
               f"sign in as {info.username} / {info.password}")


@cli.group("annotate")
def annotate_group() -> None:
    """Label items in Argilla: push them, pull the answers, see progress.

    Commands talk to ARGILLA_API_URL with ARGILLA_API_KEY (or --api-url / --api-key);
    without them, to the local server of `curate argilla serve`.
    """


API_URL = click.option("--api-url", envvar="ARGILLA_API_URL", show_envvar=True,
                       help="Argilla server URL (default: the local server).")
API_KEY = click.option("--api-key", envvar="ARGILLA_API_KEY", show_envvar=True,
                       help="Argilla API key (default: the local server's owner key).")


@annotate_group.command("push")
@PARAMS
@SOURCES
@TAXONOMY
@API_URL
@API_KEY
@click.option("--all", "everything", is_flag=True,
              help="Push every deduplicated item, not only those that still need a label.")
def annotate_push(params_path: str, sources_dir: str | None, taxonomy: str,
                  api_url: str | None, api_key: str | None, everything: bool) -> None:
    """Create or update the Argilla dataset and its records (keyed by item id)."""
    params = _annotate_params(params_path)
    domains = load_taxonomy(taxonomy)
    table = _read_input("data/deduped.parquet", "dedup")
    if not everything:
        unlabeled = _read_input("data/dropped/label.parquet", "label")
        todo = unlabeled.loc[unlabeled["reason"] == "unlabeled", "id"]
        table = table[table["id"].isin(todo)].reset_index(drop=True)
    client = _client(api_url, api_key)
    counts = push(client, table, _sources(params_path, sources_dir, domains.domain_ids),
                  domains, params)
    click.echo(f"pushed {counts['pushed']} records; the dataset '{params.dataset}' has "
               f"{counts['records_in_dataset']}")


@annotate_group.command("pull")
@PARAMS
@TAXONOMY
@API_URL
@API_KEY
@click.option("--out", "annotations_dir", default="annotations", show_default=True,
              type=click.Path(file_okay=False), help="Folder of annotation snapshots.")
def annotate_pull(params_path: str, taxonomy: str, api_url: str | None, api_key: str | None,
                  annotations_dir: str) -> None:
    """Write annotations/<dataset>.parquet and reports/annotation.json (agreement)."""
    params = _annotate_params(params_path)
    report = pull(_client(api_url, api_key), load_taxonomy(taxonomy), params,
                  Path(annotations_dir), Path("reports/annotation.json"))
    click.echo(f"{report['records_answered']} records answered; responses: "
               + ", ".join(f"{k} {v}" for k, v in report["responses"].items()))
    click.echo(f"majority labels: {sum(report['majority_labels'].values())}; to adjudicate: "
               f"{len(report['adjudication'])}")
    for figures in report["agreement"]:
        click.echo(f"{figures['question']}: Krippendorff's alpha "
                   f"{figures['krippendorff_alpha']} ({figures['level']})")


@annotate_group.command("status")
@PARAMS
@API_URL
@API_KEY
def annotate_status(params_path: str, api_url: str | None, api_key: str | None) -> None:
    """Progress per annotator and per domain."""
    params = _annotate_params(params_path)
    client = _client(api_url, api_key)
    answers = fetch_answers(client, params)
    dataset = client.datasets(name=params.dataset, workspace=params.workspace)
    per_annotator, per_domain = status_tables(answers, params, record_count(client, dataset))
    _print_table(per_annotator)
    click.echo()
    _print_table(per_domain)


def _annotate_params(params_path: str) -> AnnotateParams:
    return AnnotateParams.from_dicts(load_params(params_path, "annotate"),
                                     load_params(params_path, "label"))


def _client(api_url: str | None, api_key: str | None) -> Any:
    """The SDK client for the given server, else for the running local server."""
    if not api_url:
        info = argilla_local.status(ARGILLA_HOME)
        if info is None:
            raise CurationError("no Argilla server: set ARGILLA_API_URL and ARGILLA_API_KEY, "
                                "or start the local one with `curate argilla serve --detach`")
        api_url, api_key = info.url, api_key or info.api_key
    if not api_key:
        raise CurationError(f"no API key for {api_url}", field="ARGILLA_API_KEY")
    return connect(api_url, api_key)


@cli.command("ledger")
@click.option("--out", "output", default="reports/ledger.json", show_default=True,
              type=click.Path(dir_okay=False), help="Where the compiled ledger goes.")
def ledger_command(output: str) -> None:
    """Check that every stage's rows add up, write reports/ledger.json, print the table."""
    ledger = compile_ledger()
    with StagedWrites() as out:
        out.json(ledger, output)
    _print_table(list(ledger_table(ledger)))


def _print_table(rows: list[list[str]]) -> None:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    for row in rows:
        click.echo("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True))
                   .rstrip())


def _sources(params_path: str, sources_dir: str | None,
             domains: tuple[str, ...]) -> list[Source]:
    folder = sources_dir or load_params(params_path, "pull").get("sources_dir", "sources")
    return load_sources(folder, domains)


def _read_input(path: str, previous_stage: str) -> pd.DataFrame:
    if not Path(path).exists():
        raise CurationError(f"not found; run `curate {previous_stage}` first", file=path)
    return read_parquet(path)


def _read_report(path: str, stage: str) -> dict:
    if not Path(path).exists():
        raise CurationError(f"not found; run `curate {stage}` first", file=path)
    return json.loads(Path(path).read_text(encoding="utf-8"))


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
    except (CurationError, argilla_local.ServerError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
