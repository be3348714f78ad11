"""Stage `split`: the in-domain `default` configuration and one `heldout-<domain>` per domain.

`default`: train / validation / test, stratified by domain and, within a domain, by source.
Sizes are per domain: a fraction of its items, or a count (PsychoSafe: 100 and 100).
`heldout-<domain>`: test is every item of that domain; validation is the default
validation of the other domains; train is the rest of the other domains.

Items whose prompts are near duplicates at the looser `leakage_threshold` form groups that
always land in one split; in a held-out configuration, other-domain members of a group that
touches the held-out domain are left out. Reserved ids are always in train.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from curation.core.config import DedupParams, ParamsFile, SplitParams
from curation.core.errors import CurationError
from curation.core.items import responses_of, to_arrow
from curation.core.ledger import StageLedger
from curation.core.paths import SPLITS
from curation.core.schemas import load_schema, validate_rows
from curation.core.tableio import StagedWrites
from curation.core.taxonomy import Taxonomy
from curation.neardup.clusters import cluster, components, similar_pairs
from curation.neardup.minhash import MinHashParams, Sketches
from curation.neardup.store import load_sketches
from curation.stages.base import Context, StageResult

STAGE = "split"


def quota(size: float | int, items: int) -> int:
    """A split's item count in a domain of `items`: a count, or a fraction (at least one)."""
    return size if isinstance(size, int) else max(1, round(size * items))


def apportion(total: int, weights: dict[str, int]) -> dict[str, int]:
    """Split `total` over keys in proportion to `weights` (largest remainder, ties by key)."""
    whole = sum(weights.values())
    exact = {k: total * w / whole for k, w in weights.items()}
    shares = {k: int(v) for k, v in exact.items()}
    for key in sorted(exact, key=lambda k: (-(exact[k] - shares[k]), k))[:total - sum(
            shares.values())]:
        shares[key] += 1
    return shares


def check_inputs(table: pd.DataFrame, taxonomy: Taxonomy, params_file: ParamsFile) -> None:
    """The errors that must stop the stage before anything is written."""
    params = params_file.params.split
    counts = Counter(table["domain"])
    for domain in taxonomy.domain_ids:
        if counts[domain] == 0:
            raise CurationError(f"domain '{domain}' has no labeled items, so its held-out "
                                "configuration would have no test set",
                                file=taxonomy.path, field="domains")
        wanted = quota(params.validation, counts[domain]) + quota(params.test, counts[domain])
        if wanted >= counts[domain]:
            raise params_file.error("split.test", f"validation + test take {wanted} items but "
                                    f"domain '{domain}' has {counts[domain]}, leaving none "
                                    "for train")
    missing = sorted(set(params.reserved_ids) - set(table["id"]))
    if missing:
        raise params_file.error("split.reserved_ids",
                                f"reserved id '{missing[0]}' is not among the labeled items")


def assign_default(table: pd.DataFrame, groups: np.ndarray, params: SplitParams) -> np.ndarray:
    """The default split of each row: groups shuffled (seeded), test and validation filled
    to their per-(domain, source) quotas, the rest train; reserved groups always train."""
    strata = list(zip(table["domain"], table["source"], strict=True))
    wanted: dict[str, Counter] = {"test": Counter(), "validation": Counter()}
    for domain, rows in table.groupby("domain", sort=True):
        by_source = Counter(rows["source"])
        for name in wanted:
            for source, n in apportion(quota(getattr(params, name), len(rows)),
                                       dict(sorted(by_source.items()))).items():
                wanted[name][(domain, source)] = n
    reserved = set(table.index[table["id"].isin(params.reserved_ids)])
    members: dict[int, list[int]] = {}
    for row, group in enumerate(groups.tolist()):
        members.setdefault(group, []).append(row)
    order = sorted(members)
    rng = np.random.default_rng(params.seed)
    split = np.full(len(table), "train", dtype=object)
    for index in rng.permutation(len(order)):
        rows = members[order[index]]
        if reserved.intersection(rows):
            continue
        home = strata[min(rows, key=lambda r: table["id"].iat[r])]
        for name in ("test", "validation"):
            if wanted[name][home] > 0:
                for row in rows:
                    wanted[name][strata[row]] -= 1
                split[rows] = name
                break
    return split


def with_contrast_pairs(table: pd.DataFrame, groups: np.ndarray) -> np.ndarray:
    """Leakage groups joined with contrast pairs: a benign look-alike and its harmful twin
    always share a split (a twin that was not labelled is simply absent)."""
    row_of = {item: row for row, item in enumerate(table["id"])}
    pairs = [(row, row_of[twin]) for row, twin in enumerate(table["contrast_of"])
             if isinstance(twin, str) and twin in row_of]
    edges = np.concatenate([np.column_stack([np.arange(len(groups)), groups]),
                            np.array(pairs, dtype=np.int64).reshape(-1, 2)])
    return components(edges, len(groups))


def run(context: Context) -> StageResult:
    """Build every configuration and write data/splits/<config>/<split>.parquet."""
    params, dedup_params, paths = context.params.split, context.params.dedup, context.paths
    domains = context.taxonomy.domain_ids
    table = context.input_table(paths.labeled, "label", "labeled")
    table = table.sort_values("id", kind="stable").reset_index(drop=True)
    check_inputs(table, context.taxonomy, context.params_file)
    sketches = load_sketches(paths.signatures, table["id"].tolist())
    leakage = dataclasses.replace(MinHashParams.of(dedup_params),
                                  threshold=params.leakage_threshold)
    groups = with_contrast_pairs(table, cluster(sketches, leakage,
                                                dedup_params.max_bucket_size).labels)
    default = assign_default(table, groups, params)

    configs: dict[str, pd.DataFrame] = {"default": table.assign(split=default)}
    excluded: dict[str, int] = {}
    for domain in domains:
        in_domain = (table["domain"] == domain).to_numpy()
        touching = np.isin(groups, groups[in_domain])
        split_of = np.where(in_domain, "test", np.where(default == "validation", "validation",
                                                        "train"))
        keep = in_domain | ~touching
        excluded[f"heldout-{domain}"] = int((~keep).sum())
        configs[f"heldout-{domain}"] = table[keep].assign(split=split_of[keep])

    schema = load_schema("split")
    ledger = StageLedger(STAGE)
    with StagedWrites() as out:
        for config, frame in configs.items():
            valid, failures = validate_rows(frame, schema)
            if not failures.empty:  # a row that breaks the contract here is a bug upstream
                first = failures.iloc[0]
                raise CurationError(f"{config}: {first['detail']}", file="schemas/split.yaml",
                                    field=str(first["field"]))
            for name in SPLITS:
                out.parquet(to_arrow(valid[valid["split"] == name].reset_index(drop=True),
                                     context.vocabulary.arrow_type()),
                            paths.splits_dir / config / f"{name}.parquet")
        ledger.count_responses(responses_of(table), responses_of(table))
        summary = ledger.summary(Counter(table["source"]), Counter(table["source"]))
        report = split_report(configs, excluded, table, groups, sketches, params, dedup_params)
        ledger.write(out, paths, summary)
        out.json(report, paths.report("splits"))
    return StageResult(STAGE, summary, report, [
        f"{config}: train {figures['rows']['train']}, validation "
        f"{figures['rows']['validation']}, test {figures['rows']['test']}; max cross-split "
        f"similarity {figures['max_cross_split_similarity']}"
        for config, figures in report["configs"].items()])


def split_report(configs: dict[str, pd.DataFrame], excluded: dict[str, int],
                 table: pd.DataFrame, groups: np.ndarray, sketches: Sketches,
                 params: SplitParams, dedup_params: DedupParams) -> dict[str, Any]:
    """Sizes per configuration x split x domain, and the highest cross-split similarity."""
    found, scores = similar_pairs(sketches, MinHashParams.of(dedup_params),
                                  params.similarity_report_threshold,
                                  dedup_params.max_bucket_size)
    pairs = [(int(i), int(j)) for i, j in found.tolist()]
    similarity = scores.tolist()
    report: dict[str, Any] = {"configs": {}, "leakage_threshold": params.leakage_threshold,
                              "leakage_groups": int(len(np.unique(groups))),
                              "reserved_ids": list(params.reserved_ids)}
    ids = table["id"].tolist()
    for config, frame in configs.items():
        split_of = dict(zip(frame["id"], frame["split"], strict=True))
        cross = [s for (i, j), s in zip(pairs, similarity, strict=True)
                 if ids[i] in split_of and ids[j] in split_of
                 and split_of[ids[i]] != split_of[ids[j]]]
        sizes = {name: {str(d): int(n) for d, n in frame.loc[frame["split"] == name, "domain"]
                        .value_counts().sort_index().items()} for name in SPLITS}
        report["configs"][config] = {
            "rows": {name: int((frame["split"] == name).sum()) for name in SPLITS},
            "by_domain": sizes,
            "max_cross_split_similarity": round(max(cross), 4) if cross else 0.0,
            **({"excluded_for_leakage": excluded[config]} if config in excluded else {}),
        }
    report["similarity_checked_from"] = params.similarity_report_threshold
    return report
