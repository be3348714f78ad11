"""Stage `split`: the in-domain `default` configuration and one `heldout-<domain>` per domain.

`default`: train / validation / test, stratified by domain and, within a domain, by source.
Sizes are per domain: a fraction of its items, or a count (PsychoSafe: 100 and 100).
`heldout-<domain>`: test is every item of that domain; validation is the default
validation of the other domains; train is the rest of the other domains.

A paraphrase family (stage `families`) and a contrast pair always land in one split; in a
held-out configuration, other-domain members of a family that touches the held-out domain
are left out. Reserved ids are always in train; in the held-out configuration of their
own domain they (with their family and contrast twin) are left out, never tested on. A
domain that validation and test would leave without a train item stops the stage. The
report gives, per configuration, the largest cross-split cosine and Jaccard and the family
sizes: what leaks if anything does.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from curation.core.arrays import distinct
from curation.core.config import ParamsFile, SplitParams
from curation.core.errors import CurationError
from curation.core.items import from_arrow, typed
from curation.core.ledger import StageLedger
from curation.core.paths import SPLITS
from curation.core.schemas import load_schema, validate_rows
from curation.core.tableio import StagedWrites, check_unique, read_arrow, sha256_of
from curation.core.taxonomy import Taxonomy
from curation.neardup.clusters import components
from curation.neardup.store import load_neighbours, load_sketches
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


def check_inputs(table: pd.DataFrame, taxonomy: Taxonomy, params_file: ParamsFile,
                 path: str) -> None:
    """The errors that must stop the stage before anything is written."""
    params = params_file.params.split
    for column in ("domain", "source", "family_id"):
        empty = table[column].isna()
        if empty.any():
            raise CurationError(f"item {table.loc[empty, 'id'].iloc[0]} has no {column}; run "
                                "`curate redact` again", file=path, field=column)
    unknown = ~table["domain"].isin(taxonomy.domain_ids)
    if unknown.any():
        raise CurationError(f"item {table.loc[unknown, 'id'].iloc[0]} has domain "
                            f"'{table.loc[unknown, 'domain'].iloc[0]}', which the taxonomy does "
                            "not have; run `curate label` again", file=path, field="domain")
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


def check_train(table: pd.DataFrame, default: np.ndarray, params_file: ParamsFile) -> None:
    """Families and contrast pairs move whole, so validation and test can overshoot their
    quotas: a domain they leave without a train item stops the stage."""
    for domain, rows in table.groupby("domain", sort=True):
        taken = Counter(default[rows.index])
        if not taken["train"]:
            field = "split.validation" if taken["validation"] > taken["test"] else "split.test"
            raise params_file.error(field, f"domain '{domain}' has no train item left: "
                                    f"validation {taken['validation']} and test "
                                    f"{taken['test']} take all {len(rows)} (families and "
                                    "contrast pairs move whole); lower split.validation or "
                                    "split.test")


def assign_default(table: pd.DataFrame, groups: np.ndarray, params: SplitParams) -> np.ndarray:
    """The default split of each row: groups shuffled (seeded), test and validation filled
    to their per-(domain, source) quotas, the rest train.

    A group (a family, a contrast pair) moves whole: groups first fill each source's share
    exactly, then the domain's remaining quota with one row of overshoot at most; a larger
    family stays in train. A domain left with no test or validation item then gets its
    smallest group that is in train. Reserved groups are always train.
    """
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
    order = [sorted(members)[i] for i in np.random.default_rng(params.seed).permutation(
        len(members))]
    movable = [g for g in order if not reserved.intersection(members[g])]
    home = {g: strata[min(members[g], key=lambda r: table["id"].iat[r])] for g in movable}
    in_domain = {name: Counter({d: sum(n for (dd, _), n in quotas.items() if dd == d)
                                for d, _ in quotas}) for name, quotas in wanted.items()}
    split = np.full(len(table), "train", dtype=object)
    # First each source's share without overshoot, then what the domain still wants.
    for overshoot in (0, 1):
        for group in movable:
            rows, (domain, _) = members[group], home[group]
            if split[rows[0]] != "train":
                continue
            for name in ("test", "validation"):
                room = wanted[name][home[group]] if overshoot == 0 else in_domain[name][domain]
                if room > 0 and min(room, in_domain[name][domain]) >= len(rows) - overshoot:
                    for row in rows:
                        wanted[name][strata[row]] -= 1
                        in_domain[name][strata[row][0]] -= 1
                    split[rows] = name
                    break
    for name in ("test", "validation"):
        for domain in sorted(set(table["domain"]) - set(table["domain"][split == name])):
            left = [g for g in movable if home[g][0] == domain and split[members[g][0]] == "train"]
            if left:
                split[members[min(left, key=lambda g: len(members[g]))]] = name
    return split


def with_contrast_pairs(table: pd.DataFrame, groups: np.ndarray) -> np.ndarray:
    """Families joined with contrast pairs: a benign look-alike and its harmful twin
    always share a split (a twin that was not labelled is simply absent)."""
    row_of = {item: row for row, item in enumerate(table["id"])}
    pairs = [(row, row_of[twin]) for row, twin in enumerate(table["contrast_of"])
             if isinstance(twin, str) and twin in row_of]
    edges = np.concatenate([np.column_stack([np.arange(len(groups)), groups]),
                            np.array(pairs, dtype=np.int64).reshape(-1, 2)])
    return components(edges, len(groups))


# What the assignment reads; the items themselves stay in arrow until they are written.
_ASSIGNED_ON = ["id", "domain", "source", "family_id", "contrast_of"]
_CHECKED_ROWS = 10_000  # items validated at a time
_WRITTEN_ROWS = 10_000  # items taken and written at a time (one row group)


def run(context: Context) -> StageResult:
    """Build every configuration and write data/splits/<config>/<split>.parquet.

    Splits are assigned on a few columns in pandas; the items are held once, in arrow,
    and each split file is taken from them in id order as it is written."""
    params, paths = context.params.split, context.paths
    domains = context.taxonomy.domain_ids
    check_unique(paths.redacted, "redact", "id")
    items = read_arrow(paths.redacted, "redact", load_schema("redacted").columns)
    order = pc.sort_indices(items, [("id", "ascending")]).to_numpy()  # rows are sorted by id
    table = items.select(_ASSIGNED_ON).take(order).to_pandas()
    written = typed(items.schema.empty_table(), context.vocabulary.arrow_type(),
                    labelled=True).schema
    items = _wide(items)
    check_inputs(table, context.taxonomy, context.params_file, str(paths.redacted))
    first_row = table.groupby("family_id", sort=False).cumcount() == 0
    family_row = dict(zip(table.loc[first_row, "family_id"], table.index[first_row],
                          strict=True))
    groups = with_contrast_pairs(table, table["family_id"].map(family_row).to_numpy(np.int64))
    default = assign_default(table, groups, params)
    check_train(table, default, context.params_file)

    placed: dict[str, tuple[np.ndarray, np.ndarray]] = {  # rows in it and their split
        "default": (np.arange(len(table)), default)}
    excluded: dict[str, int] = {}
    reserved_rows = table["id"].isin(params.reserved_ids).to_numpy()
    for domain in domains:
        in_domain = (table["domain"] == domain).to_numpy()
        touching = np.isin(groups, groups[in_domain])
        reserved = np.isin(groups, groups[reserved_rows & in_domain])
        split_of = np.where(in_domain, "test", np.where(default == "validation", "validation",
                                                        "train"))
        keep = (in_domain & ~reserved) | ~touching  # a reserved example is never tested on
        excluded[f"heldout-{domain}"] = int((~keep).sum())
        placed[f"heldout-{domain}"] = (np.flatnonzero(keep), split_of[keep])
    _check(items, order, default)

    ledger = StageLedger(STAGE)
    responses = int(pc.sum(pc.list_value_length(items["responses"])).as_py() or 0)
    with StagedWrites() as out:
        schema = written.append(pa.field("split", pa.large_string()))
        for config, (rows, split_of) in placed.items():
            for name in SPLITS:
                chosen = order[rows[split_of == name]]
                target = paths.splits_dir / config / f"{name}.parquet"
                if not len(chosen):  # one empty row group, as for any empty table
                    out.parquet(schema.empty_table(), target)
                    continue
                writer = out.row_groups(target, schema, _WRITTEN_ROWS)
                for start in range(0, len(chosen), _WRITTEN_ROWS):
                    part = items.take(chosen[start:start + _WRITTEN_ROWS]).cast(written)
                    writer.write(part.append_column("split", pa.array(
                        [name] * part.num_rows, pa.large_string())))
        ledger.count_responses(responses, responses)
        summary = ledger.summary(Counter(table["source"]), Counter(table["source"]))
        configs = {config: table.iloc[rows].assign(split=split_of)
                   for config, (rows, split_of) in placed.items()}
        report = split_report(configs, excluded, table, groups, context, params)
        # what release checks the splits against: a split that failed leaves older files
        report["redacted_sha256"] = sha256_of(paths.redacted)
        ledger.write(out, paths, summary, split_figures(report))
        for config, figures in report["configs"].items():
            out.csv(["domain_split", "items"],
                    [[f"{domain} / {name}", n] for name, counts in figures["by_domain"].items()
                     for domain, n in counts.items()], paths.plot(f"splits/{config}"))
        out.csv(["configuration", "max_cross_split_cosine", "max_cross_split_jaccard"],
                [[config, f["max_cross_split_cosine"], f["max_cross_split_jaccard"]]
                 for config, f in report["configs"].items()],
                paths.plot("cross_split_similarity"))
        out.json(report, paths.report("splits"))
    return StageResult(STAGE, summary, report, [
        f"{config}: train {figures['rows']['train']}, validation "
        f"{figures['rows']['validation']}, test {figures['rows']['test']}; max cross-split "
        f"cosine {figures['max_cross_split_cosine']}, jaccard "
        f"{figures['max_cross_split_jaccard']}"
        for config, figures in report["configs"].items()])


def _wide(items: pa.Table) -> pa.Table:
    """`items` in one chunk with 64-bit offsets: taking rows from a chunked table joins its
    chunks first, and the texts of half a million items pass the 2 GB that 32-bit offsets
    reach. Taken rows are cast back to the file's types a batch at a time."""
    def wide(kind: pa.DataType) -> pa.DataType:
        if pa.types.is_string(kind):
            return pa.large_string()
        if pa.types.is_list(kind):
            return pa.large_list(pa.field(kind.value_field.name, wide(kind.value_type)))
        if pa.types.is_struct(kind):
            return pa.struct([pa.field(f.name, wide(f.type), f.nullable) for f in kind])
        return kind

    return items.cast(pa.schema([pa.field(f.name, wide(f.type)) for f in items.schema])
                      ).combine_chunks()


def _check(items: pa.Table, order: np.ndarray, split: np.ndarray) -> None:
    """Every item against the split schema, in id order, `_CHECKED_ROWS` at a time (every
    configuration holds the same rows, only their split differs; ids were checked unique).
    A row that breaks the contract here is a bug upstream, so it stops the stage."""
    schema = load_schema("split")
    for start in range(0, max(len(order), 1), _CHECKED_ROWS):
        frame = from_arrow(items.take(order[start:start + _CHECKED_ROWS])).assign(
            split=split[start:start + _CHECKED_ROWS])
        _, failures = validate_rows(frame, schema)
        if not failures.empty:
            first = failures.iloc[0]
            raise CurationError(f"default: {first['detail']}", file="schemas/split.yaml",
                                field=str(first["field"]))


def split_report(configs: dict[str, pd.DataFrame], excluded: dict[str, int],
                 table: pd.DataFrame, groups: np.ndarray, context: Context,
                 params: SplitParams) -> dict[str, Any]:
    """Sizes per configuration x split x domain, the family sizes, and the highest
    cross-split similarity by embedding cosine and by Jaccard (word 3-grams).

    Both are checked over the neighbour pairs the families stage found (each item's
    `families.neighbours` nearest), so the work grows linearly with the items: a leak is
    a pair of close items, and close items are each other's neighbours. Jaccard is
    exact, from the shingles dedup saved.
    """
    ids = table["id"].tolist()
    pairs, cosine = load_neighbours(context.paths.neighbours, context.paths.embeddings, ids)
    jaccard = load_sketches(context.paths.signatures, ids).jaccards(pairs)
    report: dict[str, Any] = {"configs": {}, "groups": int(len(distinct(groups))),
                              "reserved_ids": list(params.reserved_ids)}
    row = {item: i for i, item in enumerate(ids)}
    for config, frame in configs.items():
        split = np.full(len(ids), -1, dtype=np.int8)
        split[frame["id"].map(row).to_numpy()] = frame["split"].map(
            {name: i for i, name in enumerate(SPLITS)}).to_numpy()
        a, b = split[pairs[:, 0]], split[pairs[:, 1]]
        cross = (a >= 0) & (b >= 0) & (a != b)
        sizes = {name: {str(d): int(n) for d, n in frame.loc[frame["split"] == name, "domain"]
                        .value_counts().sort_index().items()} for name in SPLITS}
        family_sizes = Counter(frame.groupby("family_id").size().tolist())
        report["configs"][config] = {
            "rows": {name: int((frame["split"] == name).sum()) for name in SPLITS},
            "by_domain": sizes,
            "max_cross_split_jaccard": round(float(jaccard[cross].max(initial=0.0)), 4),
            "max_cross_split_cosine": round(float(cosine[cross].max(initial=0.0)), 4),
            "family_sizes": {str(k): family_sizes[k] for k in sorted(family_sizes)},
            **({"excluded_for_leakage": excluded[config]} if config in excluded else {}),
        }
    report["neighbours_per_item"] = context.params.families.neighbours
    report["neighbour_pairs_checked"] = int(len(pairs))
    return report


def split_figures(report: dict[str, Any]) -> dict[str, Any]:
    """The split stage's metrics: the default configuration's split sizes, the smallest
    held-out test, and the highest similarities across splits (over every configuration)."""
    configs = report["configs"]
    figures: dict[str, Any] = {f"default_{name}": rows
                               for name, rows in configs["default"]["rows"].items()}
    held_out = [f["rows"]["test"] for c, f in configs.items() if c != "default"]
    figures["smallest_heldout_test"] = min(held_out) if held_out else None
    for kind in ("cosine", "jaccard"):
        values = [f[f"max_cross_split_{kind}"] for f in configs.values()
                  if f[f"max_cross_split_{kind}"] is not None]
        figures[f"max_cross_split_{kind}"] = max(values) if values else None
    return figures
