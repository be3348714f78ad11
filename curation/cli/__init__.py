"""The `curate` command: click groups that parse options, call the library and print.

Stages, annotation, publishing and the local server live in their own packages; nothing
here does their work.
"""

from __future__ import annotations

import sys

import click

from curation import __version__
from curation.cli import pipeline
from curation.cli.annotate import annotate_group
from curation.cli.argilla import argilla_group
from curation.cli.release import release_group
from curation.core.errors import CurationError, ServerError, Terminated, raise_on_sigterm


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="curate")
def cli() -> None:
    """Build refusal benchmarks: pull, normalize, dedup, label, split and release."""


pipeline.register(cli)
cli.add_command(release_group)
cli.add_command(annotate_group)
cli.add_command(argilla_group)


def main() -> None:
    """Entry point: bad input ends in one line on stderr and exit code 1, no traceback;
    Ctrl-C and SIGTERM leave no temporary files."""
    raise_on_sigterm()
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except Terminated as exc:
        click.echo("terminated", err=True)
        sys.exit(exc.exit_code)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (CurationError, ServerError) as exc:
        click.echo(f"error: {exc}", err=True)
        sys.exit(1)
    except click.exceptions.Exit as exc:
        sys.exit(exc.exit_code)
