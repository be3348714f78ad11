"""Run argilla-server's own CLI with the SQL search engine registered.

Usage, with the server virtualenv's python and ``curation`` importable (PYTHONPATH)::

    python -m curation.localserver.launch database migrate
    python -m curation.localserver.launch database users create_default --api-key K --password P
    python -m curation.localserver.launch start --host 127.0.0.1 --port 6900
    python -m curation.localserver.launch worker --num-workers 1

Set ``ARGILLA_SEARCH_ENGINE=sqlite`` (the name this plugin registers) in the environment.
"""

from __future__ import annotations

import sys


def main(argv: list[str] | None = None) -> None:
    """Register the plugin, then hand the arguments to the server's CLI (it exits itself)."""
    from argilla_server.cli import app

    import curation.localserver.search_engine  # noqa: F401  (registers the engine)

    app(args=sys.argv[1:] if argv is None else argv, prog_name="argilla_server")


if __name__ == "__main__":
    main()
