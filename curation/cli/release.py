"""`curate release`: build a release (the pipeline's last stage), publish it, compare two."""

from __future__ import annotations

import click

from curation.cli.common import config_options, print_table
from curation.cli.pipeline import run_stage
from curation.core.errors import CurationError
from curation.core.paths import Paths


@click.group("release", invoke_without_command=True)
@config_options
@click.pass_context
def release_group(ctx: click.Context, params_path: str, sources_dir: str | None,
                  taxonomy: str) -> None:
    """Write releases/<version>/: data, dataset card, chart, manifest, schemas.

    With a subcommand: publish a release to the Hub, or compare two releases.
    """
    if ctx.invoked_subcommand is None:
        run_stage("release", params_path, sources_dir, taxonomy)


@release_group.command("publish")
@click.argument("version")
@click.option("--repo", "repo_id", default=None,
              help="Hub dataset repository, org/name (default: release.hub_repo, which the "
                   "card names).")
@click.option("--private", is_flag=True, help="Create the repository as private.")
@click.option("--yes", is_flag=True, help="Really upload (default: print the plan only).")
@click.option("--timeout", default=60.0, show_default=True, type=click.FloatRange(min=0.1),
              help="Seconds a Hub request may take before it is given up.")
def release_publish(version: str, repo_id: str | None, private: bool, yes: bool,
                    timeout: float) -> None:
    """Publish releases/<version> to a Hub dataset repo, tagged v<version>.

    A dry run by default: it prints the plan and needs no token. With --yes it uploads in
    one commit and tags it; the token comes from HF_TOKEN or `hf auth login`.
    """
    from curation.publishing.hub import authenticated_api, plan_publish, publish
    from curation.publishing.registry import freeze, frozen
    from curation.stages.release import manifest_of

    folder = Paths().releases_dir / version
    if repo_id is None:
        repo_id = (manifest_of(folder)["params"].get("release") or {}).get("hub_repo")
        if not repo_id:
            raise CurationError("no --repo, and the release names no release.hub_repo",
                                field="--repo")
    plan = plan_publish(folder, repo_id, private)
    released = frozen(Paths().released).get(version)
    if released and released["content_sha256"] != plan.content_sha256:
        raise CurationError(f"version {version} was released with other content; this "
                            "build is not it", file=str(Paths().released),
                            field=f"versions.{version}")
    click.echo(f"repository: {plan.repo_id} (dataset{', private' if plan.private else ''})")
    click.echo(f"tag:        {plan.tag}")
    click.echo(f"commit:     {plan.commit_message}")
    print_table([["file", "bytes", "sha256"]]
                + [[f.path, str(f.size), f.sha256] for f in plan.files])
    if not yes:
        click.echo("dry run: nothing sent (add --yes to publish)")
        return
    click.echo(publish(authenticated_api(timeout), plan, folder))
    freeze(Paths().released, version, plan.content_sha256, published=plan.repo_id)
    click.echo(f"{version} is frozen in released.yaml: commit it")


@release_group.command("freeze")
@click.argument("version")
def release_freeze(version: str) -> None:
    """Mark releases/<version> as released in released.yaml (commit that file).

    A frozen version is never rebuilt with other content; until then a version is a working
    build that `curate release` (and `dvc exp run`) rebuild freely. Publishing freezes too.
    """
    from curation.publishing.registry import freeze
    from curation.stages.release import manifest_of

    paths = Paths()
    manifest = manifest_of(paths.releases_dir / version)
    added = freeze(paths.released, version, manifest["content_sha256"])
    click.echo(f"{version} {'frozen' if added else 'was already frozen'} in {paths.released} "
               f"(content {manifest['content_sha256'][:12]}…); commit it")


@release_group.command("diff")
@click.argument("before")
@click.argument("after")
def release_diff(before: str, after: str) -> None:
    """Ids added, removed and relabelled from release BEFORE to release AFTER."""
    from curation.publishing.changelog import diff, diff_markdown, labels

    root = Paths().releases_dir
    change = diff(labels(root / before), labels(root / after))
    click.echo(diff_markdown(before, after, change, max_ids=1_000_000))
