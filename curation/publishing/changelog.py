"""What changed between two releases: ids added, removed and relabelled, per domain.

Compared on the `default` configuration, which holds every released item once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from packaging.version import InvalidVersion, Version

from curation.core.errors import CurationError

TAG_PREFIX = "v"  # the Hub tag of version 1.2.0 is v1.2.0


def version_key(version: str) -> Version:
    """Release order: 1.0.0-rc.1 < 1.0.0 < 1.0.1 (params only admit versions that parse)."""
    return Version(version)


def versions(releases: Path) -> list[str]:
    """Released versions in `releases`, oldest first."""
    found = [p.name for p in releases.iterdir() if (p / "manifest.json").exists()
             and _parses(p.name)] if releases.is_dir() else []
    return sorted(found, key=version_key)


def _parses(version: str) -> bool:
    try:
        Version(version)
    except InvalidVersion:
        return False
    return True


def previous(releases: Path, version: str) -> str | None:
    """The newest released version older than `version`."""
    older = [v for v in versions(releases) if version_key(v) < version_key(version)]
    return older[-1] if older else None


def labels(folder: Path) -> pd.Series:
    """Domain by id in a release folder's default configuration."""
    files = sorted((folder / "data" / "default").glob("*.parquet"))
    if not files:
        raise CurationError("not a release (no data/default/*.parquet)", file=str(folder))
    table = pd.concat([pd.read_parquet(p, columns=["id", "domain"]) for p in files])
    return table.set_index("id")["domain"].sort_index()


def diff(old: pd.Series, new: pd.Series) -> dict[str, Any]:
    """Ids added, removed and relabelled from `old` to `new`, and counts per domain."""
    added = new.index.difference(old.index)
    removed = old.index.difference(new.index)
    common = old.index.intersection(new.index)
    moved = common[(old[common] != new[common]).to_numpy()]
    domains = sorted(set(old) | set(new))
    return {
        "added": [str(i) for i in added],
        "removed": [str(i) for i in removed],
        "relabelled": [{"id": str(i), "from": old[i], "to": new[i]} for i in moved],
        "by_domain": {d: {"before": int((old == d).sum()), "after": int((new == d).sum()),
                          "added": int((new[added] == d).sum()),
                          "removed": int((old[removed] == d).sum()),
                          "relabelled_in": int((new[moved] == d).sum()),
                          "relabelled_out": int((old[moved] == d).sum())}
                      for d in domains},
    }


def diff_markdown(before: str, after: str, change: dict[str, Any], max_ids: int = 20) -> str:
    """The change as Markdown: a summary line, a table per domain, and the ids."""
    lines = [f"{len(change['added'])} ids added, {len(change['removed'])} removed, "
             f"{len(change['relabelled'])} relabelled since {before} (now {after}).", "",
             "| domain | before | after | added | removed | relabelled in | relabelled out |",
             "|---|---|---|---|---|---|---|"]
    for domain, n in change["by_domain"].items():
        lines.append(f"| {domain} | {n['before']} | {n['after']} | {n['added']} | "
                     f"{n['removed']} | {n['relabelled_in']} | {n['relabelled_out']} |")
    for name in ("added", "removed"):
        if change[name]:
            shown = ", ".join(f"`{i}`" for i in change[name][:max_ids])
            more = len(change[name]) - max_ids
            lines += ["", f"{name.capitalize()}: {shown}" + (f" and {more} more" if more > 0
                                                             else "")]
    if change["relabelled"]:
        shown = ", ".join(f"`{r['id']}` {r['from']} -> {r['to']}"
                          for r in change["relabelled"][:max_ids])
        lines += ["", f"Relabelled: {shown}"]
    return "\n".join(lines)


def changelog(releases: Path) -> str:
    """`releases/CHANGELOG.md`: every version, newest first, against the one before."""
    found = versions(releases)
    parts = ["# Changelog", "",
             "Ids added, removed and relabelled in each release's `default` configuration, "
             "against the release before it."]
    for older, newer in reversed(list(zip([None, *found[:-1]], found, strict=True))):
        parts += ["", f"## {newer}", ""]
        if older is None:
            count = len(labels(releases / newer))
            parts.append(f"First release: {count} items.")
        else:
            change = diff(labels(releases / older), labels(releases / newer))
            parts.append(diff_markdown(older, newer, change))
    return "\n".join(parts) + "\n"
