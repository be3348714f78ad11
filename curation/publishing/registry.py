"""`released.yaml`: the versions that were released, committed with the project.

A build in `releases/<version>/` is a working build until its version is frozen here, by
`curate release freeze` or by a successful `curate release publish`. The release stage
rebuilds a working build freely (an experiment changing a param is fine), and refuses to
give a frozen version other content: what people may have downloaded never changes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from curation.core.errors import CurationError
from curation.core.tableio import StagedWrites

HEADER = ("# Released versions (committed): their content fingerprints and where they were\n"
          "# published. A version listed here is never rebuilt with other content; add one\n"
          "# with `curate release freeze <version>` (publishing adds it too).\n")


def frozen(path: Path) -> dict[str, dict[str, Any]]:
    """Version -> {content_sha256, published}; a missing file means none yet."""
    if not path.exists():
        return {}
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise CurationError(f"not valid YAML ({str(exc).splitlines()[0]})",
                            file=str(path)) from None
    versions = data.get("versions") if isinstance(data, dict) else None
    if not isinstance(versions, dict) or not all(
            isinstance(v, dict) and isinstance(v.get("content_sha256"), str)
            for v in versions.values()):
        raise CurationError("expected 'versions:' mapping each version to its "
                            "content_sha256", file=str(path), field="versions")
    return {str(k): v for k, v in versions.items()}


def freeze(path: Path, version: str, content_sha256: str, published: str | None = None
           ) -> bool:
    """Record `version` as released; False if it was already, with this content."""
    versions = frozen(path)
    entry = versions.get(version)
    if entry is not None and entry["content_sha256"] != content_sha256:
        raise CurationError(f"version {version} was released with other content "
                            f"({entry['content_sha256'][:12]}…)", file=str(path),
                            field=f"versions.{version}")
    places = sorted(set((entry or {}).get("published", [])) | ({published} if published
                                                                 else set()))
    updated = {"content_sha256": content_sha256, **({"published": places} if places else {})}
    if entry == updated:
        return False
    versions[version] = updated
    body = yaml.safe_dump({"versions": dict(sorted(versions.items()))}, sort_keys=False)
    with StagedWrites() as out:  # all or nothing: a committed file
        out.text(HEADER + body, path)
    return True
