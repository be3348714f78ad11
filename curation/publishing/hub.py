"""Publishing a release folder to a Hugging Face Hub dataset repository.

The plan (repository, tag, every file with size and sha256) needs no token and no network.
Publishing uploads the folder in one commit named after the version, removes files an
older version left that this one lacks, and tags the commit `v<version>`. A tag that
exists already is left alone when it holds the same content (same `content_sha256`) and
refused when it does not: a published version never changes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from huggingface_hub import (
    CommitOperationAdd,
    CommitOperationDelete,
    HfApi,
    get_session,
    get_token,
)
from huggingface_hub.errors import HfHubHTTPError

from curation.core.errors import CurationError
from curation.core.tableio import sha256_of
from curation.publishing.changelog import TAG_PREFIX

KEEP_IN_REPO = {".gitattributes"}


@dataclass(frozen=True)
class PlannedFile:
    path: str
    size: int
    sha256: str


@dataclass(frozen=True)
class PublishPlan:
    repo_id: str
    version: str
    tag: str
    private: bool
    commit_message: str
    content_sha256: str
    files: tuple[PlannedFile, ...]


def plan_publish(release_dir: Path, repo_id: str, private: bool) -> PublishPlan:
    """What publishing `release_dir` would send, checked against its manifest."""
    manifest_path = release_dir / "manifest.json"
    if not manifest_path.exists():
        raise CurationError("not a release folder (no manifest.json)", file=str(release_dir))
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    carded = (manifest.get("params", {}).get("release") or {}).get("hub_repo")
    if carded != repo_id:
        raise CurationError(f"the card's load snippet and citation name {carded!r}, not "
                            f"{repo_id!r}: set release.hub_repo to {repo_id!r} and run "
                            "`curate release` (the rows do not change)", field="--repo")
    files = []
    for path, entry in sorted(manifest["files"].items()):
        local = release_dir / path
        if not local.exists() or sha256_of(local) != entry["sha256"]:
            raise CurationError("differs from the manifest: the release was changed after it "
                                "was built", file=str(local))
        files.append(PlannedFile(path, entry["bytes"], entry["sha256"]))
    files.append(PlannedFile("manifest.json", manifest_path.stat().st_size,
                             sha256_of(manifest_path)))
    version = manifest["version"]
    return PublishPlan(repo_id, version, f"{TAG_PREFIX}{version}", private,
                       f"Release {version}", manifest["content_sha256"], tuple(files))


def operations(plan: PublishPlan, release_dir: Path, existing: list[str]
               ) -> list[CommitOperationAdd | CommitOperationDelete]:
    """The commit: every file of the release, and deletions of files it no longer has."""
    wanted = {f.path for f in plan.files}
    adds: list[CommitOperationAdd | CommitOperationDelete] = [
        CommitOperationAdd(path_in_repo=f.path, path_or_fileobj=str(release_dir / f.path))
        for f in plan.files]
    deletes = [CommitOperationDelete(path_in_repo=path) for path in sorted(existing)
               if path not in wanted and path not in KEEP_IN_REPO]
    return adds + deletes


def published_content(api: HfApi, plan: PublishPlan) -> str | None:
    """The content fingerprint the Hub holds at the plan's tag; None if there is no tag."""
    if not api.repo_exists(plan.repo_id, repo_type="dataset"):
        return None
    refs = api.list_repo_refs(plan.repo_id, repo_type="dataset")
    if plan.tag not in {tag.name for tag in refs.tags}:
        return None
    path = api.hf_hub_download(plan.repo_id, "manifest.json", repo_type="dataset",
                               revision=plan.tag)
    return json.loads(Path(path).read_text(encoding="utf-8")).get("content_sha256")


def publish(api: HfApi, plan: PublishPlan, release_dir: Path) -> str:
    """Upload and tag, or do nothing if the tag holds this content; returns what happened."""
    try:
        found = published_content(api, plan)
        if found == plan.content_sha256:
            return f"{plan.repo_id}@{plan.tag} already holds this release: nothing to do"
        if found is not None:
            raise CurationError(f"{plan.repo_id} already has tag {plan.tag} with different "
                                "content; a published version never changes: set a new "
                                "release.version", field="release.version")
        api.create_repo(plan.repo_id, repo_type="dataset", private=plan.private,
                        exist_ok=True)
        existing = api.list_repo_files(plan.repo_id, repo_type="dataset")
        commit = api.create_commit(plan.repo_id, operations(plan, release_dir, existing),
                                   commit_message=plan.commit_message, repo_type="dataset")
        api.create_tag(plan.repo_id, tag=plan.tag, tag_message=plan.commit_message,
                       revision=commit.oid, repo_type="dataset")
    except CurationError:
        raise
    except HfHubHTTPError as exc:
        response = getattr(exc, "response", None)
        status = getattr(response, "status_code", None) or "?"
        hint = " (check the token's write access)" if status in (401, 403) else ""
        raise CurationError(f"the Hub refused the request (HTTP {status}) for "
                            f"{plan.repo_id}{hint}", field="--repo") from None
    except Exception as exc:  # offline mode, DNS, refused connections, timeouts, TLS...
        # huggingface_hub raises its own, httpx's and OSError's kinds depending on version
        # and call; whatever it is, a curator gets one line.
        raise CurationError(f"cannot reach the Hub ({exc.__class__.__name__})",
                            field="HF_HUB_OFFLINE" if "offline" in str(exc).lower()
                            else "HF_ENDPOINT") from None
    return f"published {plan.repo_id}@{plan.tag} (commit {commit.oid[:12]})"


def authenticated_api(timeout: float) -> HfApi:
    """A Hub client with the token of `HF_TOKEN` or `hf auth login` (never printed), whose
    requests give up after `timeout` seconds (huggingface_hub waits forever by default)."""
    token = get_token()
    if not token:
        raise CurationError("no Hugging Face token: set HF_TOKEN or run `hf auth login`",
                            field="HF_TOKEN")
    limit = {"connect": timeout, "read": timeout, "write": timeout, "pool": timeout}

    def with_timeout(request: Any) -> None:
        # huggingface_hub passes timeout=None on its calls, which overrides a client default;
        # a request hook sets the limit on every request instead.
        request.extensions["timeout"] = limit

    get_session().event_hooks["request"].append(with_timeout)
    return HfApi(token=token)
