"""Stage `families`: decontaminate against the reference sets, then group paraphrases.

Word-shingle MinHash catches copies, not rewrites ("How did people make X in the past?"),
so every prompt is embedded (sentence-transformers, cached by text and model) and:

1. An item whose embedding cosine or MinHash Jaccard to any reference item (a source with
   `role: reference`: an evaluation set) reaches `families.contamination` is removed as
   `contaminated`, naming the reference item and the score.
2. Items are joined into paraphrase families: embedding neighbours at `families.cosine`,
   MinHash clusters at `families.jaccard`, and keys the sources declare (`fields.family`),
   with a size bound against chaining (`curation.neardup.families`). Split keeps every
   family in one split.
3. `paraphrases: remove` keeps one item per family and expected behaviour (a benign
   look-alike is never removed for its harmful twin); the rest are `semantic_duplicate`s
   of that representative, their responses dropped with them.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from curation.core.config import FamiliesParams
from curation.core.engine import Engine
from curation.core.items import responses_of, to_arrow, user_text, user_texts
from curation.core.ledger import StageLedger
from curation.core.progress import bar
from curation.core.schemas import load_schema, validate_rows
from curation.core.tableio import (
    StagedWrites,
    arrow_batches,
    check_unique,
    open_input,
    read_batches,
)
from curation.core.text import clean_text
from curation.neardup.clusters import representatives
from curation.neardup.embeddings import Embedder, resolve_model
from curation.neardup.families import SearchParams, cosines, link, nearest, neighbours
from curation.neardup.lsh import candidate_pairs
from curation.neardup.minhash import (
    MinHashParams,
    Sketches,
    band_keys,
    check_bands,
    sketch,
)
from curation.neardup.store import embeddings_table, load_sketches, neighbours_table
from curation.stages.base import Context, StageResult

STAGE = "families"


@dataclasses.dataclass
class References:
    """The reference items of every reference set: their texts and who they are."""

    names: list[str]      # every reference set, an empty one too
    table: pd.DataFrame   # id, source, source_record_id
    texts: list[str]

    @classmethod
    def load(cls, context: Context) -> References:
        columns = list(load_schema("raw").columns)
        paths = sorted(context.paths.references_dir.glob("*.parquet"))
        parts = [context.input_table(path, "pull", "raw")[columns] for path in paths]
        table = (pd.concat(parts, ignore_index=True) if parts
                 else pd.DataFrame({c: pd.Series(dtype="object") for c in columns}))
        texts = [clean_text(user_text(m)) for m in table["messages"]]
        return cls([p.stem for p in paths],
                   table[["id", "source", "source_record_id"]].reset_index(drop=True), texts)


_STREAM_ROWS = 10_000  # items read at a time, in both passes
# What the first pass reads: the family plan needs no responses' texts or judgments.
_PLAN_COLUMNS = ["id", "source", "messages", "family_key", "contrast_of",
                 "expected_behavior", "responses"]


@dataclasses.dataclass
class Plan:
    """Where each item of the input goes, decided from its narrow columns: contaminated
    (`causes`), a semantic duplicate of another item (`duplicate_of`, with the `cosine`),
    or kept with its family and its twin. Rows are the input's."""

    causes: pd.DataFrame          # row, set, metric, ref, score
    duplicates: pd.DataFrame      # row, duplicate_of, cosine, family_id
    kept: pd.DataFrame            # row, family_id, family_size, contrast_of


def run(context: Context) -> StageResult:
    """Embed, decontaminate, group, and write `data/families.parquet` with the vectors.

    Two passes over the input, `_STREAM_ROWS` items at a time: the first reads the
    columns the families are decided on (the prompts, not the responses), the second
    writes each item where the plan sends it. Embeddings and sketches are held whole:
    the neighbour search needs them all."""
    params, paths = context.params.families, context.paths
    minhash = MinHashParams.of(context.params.dedup)
    search_from = dataclasses.replace(minhash, threshold=min(params.contamination.jaccard,
                                                             minhash.threshold / 2))
    for threshold, field in ((search_from, "families.contamination.jaccard"),
                             (dataclasses.replace(minhash, threshold=params.jaccard),
                              "families.jaccard")):
        check_bands(threshold, context.params_file.error, field)
    columns = load_schema("deduped").columns
    like = open_input(paths.deduped, "dedup", columns).schema_arrow
    check_unique(paths.deduped, "dedup", "id")
    items, texts = _narrow(paths.deduped, columns)
    references = References.load(context)
    model = resolve_model(params.model, paths.cache, context.params_file.error)
    engine = context.params.engine
    embedder = Embedder(model, paths.cache, params.device, params.batch_size,
                        params.batch_tokens, params.num_threads, context.params_file.error,
                        Engine(engine.kind, engine.address) if engine.kind == "ray" else None)
    vectors = embedder.embed(texts + references.texts)  # one pass over the cache
    del texts
    vectors, ref_vectors = vectors[:len(items)], vectors[len(items):]
    sketches = load_sketches(paths.signatures, items["id"].tolist())
    search = SearchParams.of(params)

    closest = closest_references(
        vectors, sketches, ref_vectors, sketch(references.texts, minhash), references,
        search_from, search)
    del ref_vectors  # a view that would hold the items' vectors too, past a copy of them
    causes = with_look_alikes(contamination_causes(closest, len(items), params), items)
    keep = np.setdiff1d(np.arange(len(items)), causes["row"].to_numpy() if len(causes) else [])
    linked = items.iloc[keep].reset_index(drop=True)
    if len(keep) < len(items):  # a copy of every vector and sketch only when some leave
        vectors, sketches = vectors[keep], sketches.take(keep)

    pairs, scores = neighbours(vectors, search, -1.0)  # every neighbour: split reuses them
    close = scores >= params.cosine
    lexical = _lexical_pairs(sketches, minhash, params, context.params.dedup)
    # Lexical links first (score 2, above any cosine), then cosine links, strongest first;
    # both stop at max_family_size, so templated prompts cannot chain into one family.
    found = link(vectors, _declared_edges(linked),
                 np.concatenate([lexical, pairs[close]]),
                 np.concatenate([np.full(len(lexical), 2.0, np.float32), scores[close]]),
                 params.cosine, params.max_family_size)
    plan = _plan(linked, keep, causes, vectors, found.labels, params.paraphrases,
                 context.params.dedup.source_priority)

    ledger = StageLedger(STAGE)
    dropped: Counter[str] = Counter()
    kept_sources: Counter[str] = Counter()
    kept_responses = 0
    kept_rows: list[np.ndarray] = []
    kept_families: list[np.ndarray] = []
    schema, judgments = load_schema("families"), context.vocabulary.arrow_type()
    with StagedWrites() as out, bar(len(items), "families write") as shown:
        writer = None
        start = 0
        for frame in read_batches(paths.deduped, "dedup", columns, _STREAM_ROWS):
            stop = start + len(frame)
            _drop_contaminated(frame, _within(plan.causes, start, stop), references, ledger,
                               dropped)
            _drop_duplicates(frame, _within(plan.duplicates, start, stop), ledger, dropped)
            mine = _within(plan.kept, start, stop)
            placed = frame.iloc[mine["row"].to_numpy()].reset_index(drop=True)
            placed = placed.assign(  # typed as ids, also in a batch where all are null
                contrast_of=pd.Series(mine["contrast_of"].to_numpy(),
                                      dtype=frame["contrast_of"].dtype),
                family_id=pd.Series(mine["family_id"].to_numpy(), dtype=frame["id"].dtype),
                family_size=mine["family_size"].to_numpy(dtype=np.int64))
            valid, failures = validate_rows(placed, schema)
            passed = np.ones(len(placed), dtype=bool)
            if not failures.empty:
                broken = placed.iloc[failures["index"]]
                dropped["item_quarantined"] += responses_of(broken)
                ledger.drop(broken, "quarantined", failures["check"], field=failures["field"],
                            detail=failures["detail"])
                passed[failures["index"].to_numpy(dtype=int)] = False
            kept_rows.append(start + mine["row"].to_numpy()[passed])
            kept_families.append(valid["family_id"].to_numpy(dtype=object))
            kept_sources.update(valid["source"])
            kept_responses += responses_of(valid)
            arrow = to_arrow(valid, judgments, like=like)
            writer = writer or out.row_groups(paths.families, arrow.schema, _STREAM_ROWS)
            writer.write(arrow)
            shown.update(len(frame))
            start = stop
        ledger.count_responses(int(items["responses"].sum()), kept_responses, **dropped)
        summary = ledger.summary(Counter(items["source"]), kept_sources)
        written = np.concatenate(kept_rows)
        family_ids = np.concatenate(kept_families)
        report = families_report(found.stats, closest, causes, references, embedder,
                                 model_name(params), family_ids, params)
        ids = items["id"].to_numpy()
        out.parquet(embeddings_table(ids[written].tolist(), _rows_of(vectors, keep, written)),
                    paths.embeddings)
        out.parquet(neighbours_table(*_kept_pairs(pairs, scores, ids[keep], ids[written])),
                    paths.neighbours)
        ledger.write(out, paths, summary, {k: report[k] for k in (
            "families", "families_with_several_items", "largest_family")})
        out.csv(["size", "families"],
                [[int(k), v] for k, v in report["size_distribution"].items()],
                paths.plot("family_sizes"))
        out.json(report, paths.report("families"))
    # The cache's work is printed, not reported: a rerun must write the same bytes.
    lines = [f"families: {report['families']} (largest {report['largest_family']}); "
             f"embedded {embedder.stats['embedded']}, cached {embedder.stats['cached']}"]
    lines += [f"reference {name}: {figures['removed']} items removed, highest remaining "
              f"cosine {figures['highest_remaining_cosine']}"
              for name, figures in report["contamination"].items()]
    return StageResult(STAGE, summary, report, lines)


def _narrow(path: Path, columns: Iterable[str]) -> tuple[pd.DataFrame, list[str]]:
    """The first pass: every item's id, source, family key, twin, expected behaviour and
    number of responses, and the text it is embedded on (no response becomes a Python
    object)."""
    parts, texts = [], []
    for batch in arrow_batches(path, "dedup", columns, _STREAM_ROWS, only=_PLAN_COLUMNS):
        texts += user_texts(batch["messages"]).to_pylist()
        counts = pc.list_value_length(batch["responses"]).fill_null(0)
        parts.append(batch.drop_columns(["messages", "responses"]).to_pandas().assign(
            responses=counts.to_numpy(zero_copy_only=False).astype(np.int64)))
    return pd.concat(parts, ignore_index=True), texts


def _within(rows: pd.DataFrame, start: int, stop: int) -> pd.DataFrame:
    """The rows of a plan table (ascending `row`) in the batch [start, stop), renumbered
    to it."""
    lo, hi = np.searchsorted(rows["row"].to_numpy(), [start, stop])
    picked = rows.iloc[lo:hi]
    return picked.assign(row=picked["row"] - start).reset_index(drop=True)


def _rows_of(vectors: np.ndarray, keep: np.ndarray, written: np.ndarray) -> np.ndarray:
    """The vectors of input rows `written`, from those of `keep` (both ascending, and
    `written` a subset of `keep`: the items kept after decontamination)."""
    if len(written) == len(keep):
        return vectors
    return vectors[np.searchsorted(keep, written)]


def _kept_pairs(pairs: np.ndarray, scores: np.ndarray, ids: np.ndarray,
                kept: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Neighbour pairs between kept items, renumbered to the kept items' rows."""
    row = pd.Index(kept).get_indexer(ids)[pairs] if len(pairs) else pairs
    both = (row >= 0).all(axis=1)
    return np.sort(row[both], axis=1), scores[both]


def closest_references(vectors: np.ndarray, sketches: Sketches, ref_vectors: np.ndarray,
                       ref_sketches: Sketches, references: References,
                       search_from: MinHashParams, search: SearchParams
                       ) -> dict[str, pd.DataFrame]:
    """Per reference set, each item's most similar reference item by cosine and by
    Jaccard (its row among all reference items and the score; -1 and 0.0 when none).
    Jaccard candidates come from LSH at `search_from.threshold` (at most half the dedup
    threshold: low enough to report the highest remaining similarity)."""
    n = len(sketches)
    ref_sets = references.table["source"].to_numpy()
    jaccard = {name: (np.full(n, -1, dtype=np.int64), np.zeros(n))
               for name in references.names}
    if len(ref_sets):
        both = sketches.concat(ref_sketches)
        pairs, _ = candidate_pairs(  # only (item, reference) pairs are held
            band_keys(both.signatures, search_from.bands), both.sketched, _MAX_BUCKET,
            keep=lambda found: (found[:, 0] < n) & (found[:, 1] >= n))
        cross = pairs.tolist()
        cross += _exact_matches(sketches.exact, ref_sketches.exact)
        for i, j in cross:
            score, ref = both.similarity(i, j), j - n
            rows, best = jaccard[ref_sets[ref]]
            if (score, -ref) > (best[i], -rows[i]):
                best[i], rows[i] = score, ref
    closest = {}
    for name in references.names:
        mine = np.flatnonzero(ref_sets == name)
        row, cosine = nearest(vectors, ref_vectors[mine], search)
        closest[name] = pd.DataFrame({"cosine_ref": mine[row] if len(mine) else row,
                                      "cosine": cosine, "jaccard_ref": jaccard[name][0],
                                      "jaccard": jaccard[name][1]})
    return closest


_MAX_BUCKET = 1000  # reference sets are small: pair each bucket member with this many


def _exact_matches(items: np.ndarray, refs: np.ndarray) -> list[tuple[int, int]]:
    """(item row, n + reference row) for texts equal after cleanup."""
    first_ref: dict[int, int] = {}
    for row, key in enumerate(refs.tolist()):
        first_ref.setdefault(key, row)
    return [(i, len(items) + first_ref[k]) for i, k in enumerate(items.tolist())
            if k in first_ref]


def contamination_causes(closest: dict[str, pd.DataFrame], n: int,
                         params: FamiliesParams) -> pd.DataFrame:
    """The contaminated items: per item (row), the closest reference item at or above a
    threshold (set, metric, reference row, score), the highest score first."""
    hits = []
    for name, frame in closest.items():
        for metric, threshold in (("cosine", params.contamination.cosine),
                                  ("jaccard", params.contamination.jaccard)):
            over = np.flatnonzero(frame[metric].to_numpy() >= threshold)
            hits.append(pd.DataFrame({"row": over, "set": name, "metric": metric,
                                      "ref": frame[f"{metric}_ref"].to_numpy()[over],
                                      "score": frame[metric].to_numpy()[over]}))
    found = pd.concat(hits, ignore_index=True) if hits else pd.DataFrame(
        {"row": pd.Series(dtype="int64")})
    if found.empty:
        return found
    return (found.sort_values(["row", "score", "set", "metric"],
                              ascending=[True, False, True, True], kind="stable")
            .drop_duplicates("row").reset_index(drop=True))


def with_look_alikes(causes: pd.DataFrame, table: pd.DataFrame) -> pd.DataFrame:
    """A benign look-alike leaves with its contaminated harmful twin (same reference), so
    no released pair points to an item that is not there."""
    if causes.empty:
        return causes
    cause_of = dict(zip(table["id"].to_numpy()[causes["row"]], causes.to_dict("records"),
                        strict=True))
    removed = set(causes["row"].tolist())
    followers = [{**cause_of[twin], "row": row, "metric": "contrast_of"}
                 for row, twin in enumerate(table["contrast_of"])
                 if isinstance(twin, str) and twin in cause_of and row not in removed]
    if not followers:
        return causes
    return (pd.concat([causes, pd.DataFrame(followers)], ignore_index=True)
            .sort_values("row", kind="stable").reset_index(drop=True))


def _drop_contaminated(table: pd.DataFrame, causes: pd.DataFrame, references: References,
                       ledger: StageLedger, dropped: Counter[str]) -> None:
    if causes.empty:
        return
    ref = references.table.iloc[causes["ref"]].reset_index(drop=True)
    rows = table.iloc[causes["row"]]
    dropped["item_contaminated"] += responses_of(rows)
    detail = [f"{m} {s:.3f} to {src} record {rid}" if m != "contrast_of" else
              f"its harmful twin is contaminated ({src} record {rid})"
              for m, s, src, rid in zip(causes["metric"], causes["score"], ref["source"],
                                        ref["source_record_id"], strict=True)]
    ledger.drop(rows, "contaminated", causes["set"], field=causes["metric"],
                detail=pd.Series(detail), duplicate_of=ref["id"])


def _declared_edges(table: pd.DataFrame) -> np.ndarray:
    """Edges that always join: items sharing a family key their source declares."""
    edges = [np.empty((0, 2), dtype=np.int64)]
    keys = table["family_key"]
    declared = keys.notna().to_numpy()
    if declared.any():
        first = keys[declared].groupby(keys[declared]).transform(lambda s: s.index[0])
        edges.append(np.column_stack([first.index.to_numpy(), first.to_numpy()]))
    return np.concatenate(edges).astype(np.int64)


def _lexical_pairs(sketches: Sketches, minhash: MinHashParams, params: FamiliesParams,
                   dedup: Any) -> np.ndarray:
    """Pairs of items at `families.jaccard` or above (LSH candidates, checked exactly)."""
    bands = dataclasses.replace(minhash, threshold=params.jaccard).bands
    pairs, _ = candidate_pairs(band_keys(sketches.signatures, bands), sketches.sketched,
                               dedup.max_bucket_size,
                               keep=lambda found: sketches.reaching(found, params.jaccard))
    return pairs


def _plan(linked: pd.DataFrame, rows: np.ndarray, causes: pd.DataFrame, vectors: np.ndarray,
          labels: np.ndarray, paraphrases: str, source_priority: list[str]) -> Plan:
    """Families of the items left after decontamination (`linked`, at input `rows`), each
    named by its smallest id. With `paraphrases: remove`, one item per (family, expected
    behaviour) stays; the others are semantic duplicates of it, and a benign look-alike
    whose harmful twin left points to the twin's representative."""
    ids = linked["id"].to_numpy()
    rep = np.arange(len(linked))
    if paraphrases == "remove":
        groups = pd.Series(list(zip(labels.tolist(), linked["expected_behavior"], strict=True)))
        rep = representatives(pa.table({
            "row": rep, "label": groups.factorize()[0], "id": pa.array(ids, pa.string()),
            "source": pa.array(linked["source"], pa.string()),
            "has_response": linked["responses"].to_numpy() > 0}), tuple(source_priority))
    gone = rep != np.arange(len(linked))
    duplicates = pd.DataFrame({
        "row": rows[gone], "duplicate_of": ids[rep[gone]],
        "cosine": cosines(vectors, np.column_stack([np.flatnonzero(gone), rep[gone]]))})
    kept_for = dict(zip(ids[gone], ids[rep[gone]], strict=True))
    kept = pd.DataFrame({"row": rows[~gone], "id": ids[~gone], "family": ids[labels][~gone],
                         "contrast_of": linked["contrast_of"][~gone].map(
                             lambda t: kept_for.get(t, t)).to_numpy()})
    family = kept.groupby("family")["id"]
    kept = kept.assign(family_id=family.transform("min"),
                       family_size=family.transform("size").astype(np.int64))
    family_of = np.empty(len(linked), dtype=object)
    family_of[~gone] = kept["family_id"].to_numpy()
    return Plan(causes, duplicates.assign(family_id=family_of[rep[gone]]), kept)


def _drop_duplicates(items: pd.DataFrame, duplicates: pd.DataFrame, ledger: StageLedger,
                     dropped: Counter[str]) -> None:
    """Semantic duplicates leave with their responses (they answered another prompt)."""
    if duplicates.empty:
        return
    rows = items.iloc[duplicates["row"].to_numpy()].assign(
        family_id=duplicates["family_id"].to_numpy())  # its representative's family
    dropped["item_semantic_duplicate"] += responses_of(rows)
    ledger.drop(rows, "duplicate", "semantic_duplicate",
                duplicate_of=pd.Series(duplicates["duplicate_of"].to_numpy()),
                detail=pd.Series([f"cosine {c:.3f} to its family's representative"
                                  for c in duplicates["cosine"]]))


def families_report(stats: dict[str, Any], closest: dict[str, pd.DataFrame],
                    causes: pd.DataFrame, references: References, embedder: Embedder,
                    model: str, family_ids: np.ndarray, params: FamiliesParams
                    ) -> dict[str, Any]:
    """The figures of `reports/families.json`: families, contamination per reference set,
    and the model the embeddings came from. `family_ids`: those of the kept items."""
    removed = Counter(causes["set"]) if not causes.empty else Counter()
    left = np.ones(len(next(iter(closest.values()))) if closest else 0, dtype=bool)
    if not causes.empty:
        left[causes["row"].to_numpy()] = False
    contamination = {name: {
        "reference_items": int((references.table["source"] == name).sum()),
        "removed": removed[name],
        "highest_remaining_cosine": round(float(frame["cosine"][left].max()), 4)
        if left.any() else 0.0,
        "highest_remaining_jaccard": round(float(frame["jaccard"][left].max()), 4)
        if left.any() else 0.0,
    } for name, frame in closest.items()}
    return {
        **stats,
        "families_with_several_items": int((pd.Series(family_ids).value_counts() > 1).sum()),
        "contaminated": int(len(causes)),
        "contamination": contamination,
        "embeddings": {"model": model, "model_key": embedder.model.key,
                       "device": embedder.device},
        "params": {"cosine": params.cosine, "jaccard": params.jaccard,
                   "neighbours": params.neighbours, "max_family_size": params.max_family_size,
                   "paraphrases": params.paraphrases,
                   "contamination": params.contamination.model_dump()},
    }


def model_name(params: FamiliesParams) -> str:
    """How the card names the model: its Hub id, folder, or pinned wheel."""
    model = params.model
    if model.pypi is not None:
        return f"{model.pypi.package}=={model.pypi.version} ({model.pypi.member})"
    return model.hub or str(model.folder)
