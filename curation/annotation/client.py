"""Reaching an Argilla server: a real deployment (URL and API key), or the local server
that `curate argilla serve` started."""

from __future__ import annotations

import warnings
from pathlib import Path

import argilla as rg
import httpx

from curation.core.errors import CurationError
from curation.localserver import runner


def client_for(api_url: str | None, api_key: str | None, local_home: Path) -> rg.Argilla:
    """The SDK client for the given server, else for the running local server."""
    if not api_url:
        info = runner.status(local_home)
        if info is None:
            raise CurationError("no Argilla server: set ARGILLA_API_URL and ARGILLA_API_KEY, "
                                "or start the local one with `curate argilla serve --detach`")
        api_url, api_key = info.url, api_key or info.api_key
    if not api_key:
        raise CurationError(f"no API key for {api_url}", field="ARGILLA_API_KEY")
    return connect(api_url, api_key)


def connect(api_url: str, api_key: str) -> rg.Argilla:
    """An SDK client, after a plain request that turns connection problems into one line."""
    try:
        answer = httpx.get(f"{api_url.rstrip('/')}/api/v1/me",
                           headers={"X-Argilla-Api-Key": api_key}, timeout=10)
    except httpx.HTTPError as exc:
        raise CurationError(f"cannot reach Argilla at {api_url}: {exc.__class__.__name__}",
                            field="ARGILLA_API_URL") from None
    if answer.status_code in (401, 403):
        raise CurationError(f"Argilla at {api_url} rejected the API key "
                            f"(HTTP {answer.status_code})", field="ARGILLA_API_KEY")
    if answer.status_code != 200:
        raise CurationError(f"Argilla at {api_url} answered HTTP {answer.status_code}",
                            field="ARGILLA_API_URL")
    return rg.Argilla(api_url=api_url, api_key=api_key)


def find_workspace(client: rg.Argilla, name: str) -> rg.Workspace | None:
    """The workspace, or None (without the SDK's warning: not there yet is normal)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return client.workspaces(name)


def find_dataset(client: rg.Argilla, name: str, workspace: str) -> rg.Dataset | None:
    """The dataset, or None (without the SDK's warning: not there yet is normal)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return client.datasets(name=name, workspace=workspace)
