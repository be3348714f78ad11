"""Stage `release`: a versioned folder that `datasets.load_dataset` reads.

`releases/<version>/` holds `data/<config>/<split>.parquet`, a dataset card (`README.md`,
built with huggingface_hub's card API, its YAML header listing the configurations), a
domain-distribution chart, `manifest.json` (sha256 and rows of every file, params, source
pins, toolkit version) and a copy of the schemas and taxonomy.

A released version is immutable: once frozen in `released.yaml` (`curate release freeze`,
or publishing), rebuilding it with different content is an error; until then it is a
working build, rebuilt freely (so `dvc exp run -S <param>` works). The same content always
writes the same bytes. Content means the released rows and the schemas; its fingerprint
is `content_sha256` in the manifest.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from curation import __version__
from curation.core.config import ReleaseParams
from curation.core.errors import CurationError, first_line
from curation.core.items import typed
from curation.core.paths import SPLITS
from curation.core.schemas import load_schema
from curation.core.tableio import StagedWrites, parquet_file, read_arrow, read_input, sha256_of
from curation.publishing.card import CHART, ReleaseInputs, dataset_card, domain_chart
from curation.publishing.changelog import changelog, diff, labels, previous
from curation.publishing.registry import frozen
from curation.stages.base import Context, StageResult

STAGE = "release"


def split_files(folder: Path) -> dict[str, dict[str, Path]]:
    """Every configuration's split files, the default configuration first."""
    configs = sorted(p.name for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    if not configs:
        raise CurationError("no split configurations; run `curate split` first",
                            file=str(folder))
    return {config: {name: folder / config / f"{name}.parquet" for name in SPLITS}
            for config in _default_first(configs)}


def _default_first(configs: list[str]) -> list[str]:
    return sorted(configs, key=lambda c: (c != "default", c))


def run(context: Context) -> StageResult:
    """Build `releases/<version>/` from the splits and the earlier stages' reports."""
    paths = context.paths
    configs = split_files(paths.splits_dir)
    split_report = context.input_report("splits", "split")
    check_current(configs, split_report, paths.redacted, paths.report("splits"))
    columns = load_schema("split").columns
    inputs = ReleaseInputs(
        default={name: read_input(path, "split", columns)
                 for name, path in configs["default"].items()},
        configs=configs, taxonomy=context.taxonomy,
        schema_dir=paths.schemas_dir, sources=context.input_report("sources", "pull"),
        dedup=context.input_report("dedup", "dedup"),
        families=context.input_report("families", "families"),
        labels=context.input_report("labels", "label"),
        signals=context.input_report("signals", "label"),
        suggest=context.input_report("suggest", "suggest"),
        split_report=split_report,
        redact=context.input_report("redact", "redact"),
        params=context.params_file.provenance,
        vocabulary=context.vocabulary)
    target = release(inputs, context.params.release, paths.releases_dir, paths.released)
    return StageResult(STAGE, None, {"release": str(target)}, [
        f"release: {target}",
        f'load it: datasets.load_dataset("{target}", "heldout-'
        f'{inputs.taxonomy.domain_ids[0]}")'])


def check_current(configs: dict[str, dict[str, Path]], split_report: dict[str, Any],
                  redacted: Path, report_path: Path) -> None:
    """The split files are the ones the last `curate split` wrote, from today's items: a
    split that stopped (or a stage before it that changed its output since) leaves older
    files, which would be released with items that are no longer there."""
    if not redacted.exists():
        raise CurationError("not found; run `curate redact` first", file=str(redacted))
    if split_report.get("redacted_sha256") != sha256_of(redacted):
        raise CurationError(f"the splits were built from another {redacted}; run `curate "
                            "split` again", file=str(report_path))
    written = split_report.get("configs", {})
    for config, splits in configs.items():
        for name, path in splits.items():
            expected = written.get(config, {}).get("rows", {}).get(name)
            try:
                found = parquet_file(path).metadata.num_rows
            except (OSError, pa.ArrowException) as exc:
                raise CurationError(f"not a readable parquet file ({first_line(exc)}); run "
                                    "`curate split` again", file=str(path)) from None
            if found != expected:
                raise CurationError(f"holds {found} rows where `curate split` wrote "
                                    f"{expected}; run `curate split` again", file=str(path))


def release(inputs: ReleaseInputs, params: ReleaseParams, releases: Path,
            registry: Path) -> Path:
    """Build `releases/<version>/`, refusing to change a frozen version's content, and
    rewrite `releases/CHANGELOG.md`."""
    target = releases / params.version
    for stale in releases.glob(f".{params.version}.*"):  # staging left by a killed run
        shutil.rmtree(stale, ignore_errors=True)
    now = _default_labels(inputs)
    before = previous(releases, params.version)
    change = (before, diff(labels(releases / before), now)) if before else None
    with tempfile.TemporaryDirectory(prefix=f".{params.version}.", dir=_made(releases)) as tmp:
        staging = Path(tmp) / params.version
        build(inputs, params, staging, change)
        manifest = json.loads((staging / "manifest.json").read_text(encoding="utf-8"))
        released = frozen(registry).get(params.version)
        if released and released["content_sha256"] != manifest["content_sha256"]:
            found = (f" ({_changes(diff(labels(target), now))})"
                     if _existing_fingerprint(target) == released["content_sha256"] else "")
            raise CurationError(
                f"version {params.version} was released with other content{found}; a "
                "released version never changes: set a new release.version",
                file=str(registry), field=f"versions.{params.version}")
        if released and _card_changes(target, staging):
            raise CurationError(
                f"version {params.version} was released; rebuilding it would change its "
                "dataset card (README.md: its text, gate or metadata); a released version "
                "never changes: set a new release.version", file=str(registry),
                field=f"versions.{params.version}")
        if target.exists():  # a working build, or a released one rebuilt the same: replaced
            shutil.rmtree(target)
        staging.rename(target)
    with StagedWrites() as out:
        out.text(changelog(releases), releases / "CHANGELOG.md")
    return target


def _card_changes(target: Path, staging: Path) -> bool:
    """Whether a rebuild would change the card people read (and its access gate) in a built
    release folder. The rows are the content check's; parquet and manifest bytes also carry
    library versions, which a rebuild may move. No build there (a fresh clone builds a
    released version from its pins): no change."""
    card = target / "README.md"
    return card.exists() and card.read_bytes() != (staging / "README.md").read_bytes()


def _changes(found: dict[str, Any]) -> str:
    return (f"{len(found['added'])} ids added, {len(found['removed'])} removed, "
            f"{len(found['relabelled'])} relabelled, or other values changed")


def _default_labels(inputs: ReleaseInputs) -> pd.Series:
    rows = pd.concat(inputs.default.values())
    return rows.set_index("id")["domain"].sort_index()


def _made(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def manifest_of(folder: Path) -> dict[str, Any]:
    """A built release's manifest; one line if there is none."""
    path = folder / "manifest.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise CurationError("no such release; run `curate release` first",
                            file=str(path)) from None
    except json.JSONDecodeError as exc:
        raise CurationError(f"not a release manifest ({exc.msg})", file=str(path)) from None


def _existing_fingerprint(target: Path) -> str | None:
    try:
        return manifest_of(target).get("content_sha256")
    except CurationError:  # no build there, or a broken one: nothing to compare
        return None


def build(inputs: ReleaseInputs, params: ReleaseParams, folder: Path,
          change: tuple[str, dict[str, Any]] | None) -> None:
    """Write every file of the release into `folder`; `change` is the previous version and
    the diff against it, for the card."""
    (folder / "data").mkdir(parents=True)
    rows: dict[str, dict[str, int]] = {}
    columns = load_schema("split").columns
    for config, splits in inputs.configs.items():  # one file in memory at a time
        (folder / "data" / config).mkdir()
        rows[config] = {}
        for name, path in splits.items():
            table = typed(read_arrow(path, "split", columns), inputs.vocabulary.arrow_type(),
                          labelled=True)
            pq.write_table(table, folder / "data" / config / f"{name}.parquet",
                           compression="zstd")
            rows[config][name] = table.num_rows
    shutil.copytree(inputs.schema_dir, folder / "schemas",
                    ignore=shutil.ignore_patterns("__pycache__", ".*"))
    try:
        (folder / CHART).write_bytes(domain_chart(inputs))
        card = dataset_card(inputs, params, rows, change)
    except (KeyError, TypeError, AttributeError) as exc:  # reports the card reads, damaged
        raise CurationError(f"a report lacks what the card reads ({type(exc).__name__}: "
                            f"{exc}); run the stages again (`dvc repro`)",
                            file="reports") from None
    (folder / "README.md").write_text(str(card), encoding="utf-8")
    manifest = {
        "name": params.pretty_name,
        "version": params.version,
        "toolkit": {"name": "refusal-curation", "version": __version__},
        "content_sha256": content_fingerprint(folder),
        "rows": rows,
        "files": {str(p.relative_to(folder)): {"sha256": sha256_of(p), "bytes": p.stat().st_size}
                  for p in sorted(folder.rglob("*")) if p.is_file()},
        "params": inputs.params,
        "sources": inputs.sources,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2, ensure_ascii=False)
                                          + "\n", encoding="utf-8")


def content_fingerprint(folder: Path) -> str:
    """A hash of the released rows (not the parquet bytes, which carry writer versions) and
    of the schemas: what users load and what it promises."""
    digest = hashlib.sha256()
    for path in sorted((folder / "data").rglob("*.parquet")):
        digest.update(str(path.relative_to(folder)).encode())
        for row in _rows(path):
            digest.update(json.dumps(row, sort_keys=True, ensure_ascii=False,
                                     default=str).encode())
    for path in sorted((folder / "schemas").rglob("*")):
        if path.is_file():
            digest.update(str(path.relative_to(folder)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()


def _rows(path: Path) -> Iterator[dict[str, Any]]:
    for batch in parquet_file(path).iter_batches(batch_size=10_000):
        yield from batch.to_pylist()


