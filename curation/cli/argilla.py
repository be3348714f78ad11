"""`curate argilla`: the local Argilla server for curators without a deployment."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from curation.core.errors import CurationError, Terminated
from curation.core.paths import Paths

HOME = click.option("--home", default=str(Paths().argilla_home), show_default=True,
                    type=click.Path(file_okay=False), help="Server data folder (SQLite, logs).")


@click.group("argilla")
def argilla_group() -> None:
    """A local Argilla server for curators without a deployment (and for the tests)."""


@argilla_group.command("serve")
@HOME
@click.option("--port", type=int, help="Port on 127.0.0.1 (default: a free one).")
@click.option("--detach", is_flag=True, help="Leave the server running and return.")
def argilla_serve(home: str, port: int | None, detach: bool) -> None:
    """Start the real argilla-server (own virtualenv, SQLite, local Redis) on 127.0.0.1.

    Prints the URL and the owner's credentials; stops cleanly on Ctrl-C unless --detach.
    """
    from curation.localserver import runner  # requests, fakeredis: only here
    info = runner.start(Path(home), port, progress=lambda line: click.echo(line, err=True))
    click.echo(f"Argilla is up at {info.url}")
    click.echo(f"  sign in as {info.username} / {info.password}")
    click.echo(f"  API key: {info.api_key} (also in {Path(home) / 'server.json'})")
    if detach:
        click.echo("  stop it with: curate argilla stop")
        return
    click.echo("Press Ctrl-C to stop.")
    try:
        while runner.status(Path(home)) is not None:
            time.sleep(1)
        raise CurationError("the server stopped; see its logs", file=str(Path(home) / "logs"))
    except (KeyboardInterrupt, Terminated):
        runner.stop(Path(home))
        click.echo("stopped")


@argilla_group.command("stop")
@HOME
def argilla_stop(home: str) -> None:
    """Stop the local server started with --detach."""
    from curation.localserver import runner
    click.echo("stopped" if runner.stop(Path(home)) else "not running")


@argilla_group.command("status")
@HOME
def argilla_status(home: str) -> None:
    """Say whether the local server runs, and where."""
    from curation.localserver import runner
    info = runner.status(Path(home))
    if info is None:
        click.echo("not running")
        sys.exit(3)
    click.echo(f"running at {info.url} (redis: {info.redis_kind}); "
               f"sign in as {info.username} / {info.password}")
