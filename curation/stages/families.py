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
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from curation.core.config import FamiliesParams
from curation.core.engine import Engine
from curation.core.items import responses_of, to_arrow, user_text
from curation.core.ledger import StageLedger
from curation.core.schemas import load_schema, validate_rows
from curation.core.tableio import StagedWrites
from curation.core.text import clean_text
from curation.neardup.clusters import representatives
from curation.neardup.embeddings import Embedder, resolve_model
from curation.neardup.families import SearchParams, cosines, link, nearest, neighbours
from curation.neardup.lsh import candidate_pairs
from curation.neardup.minhash import MinHashParams, Sketches, band_keys, sketch
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


def run(context: Context) -> StageResult:
    """Embed, decontaminate, group, and write `data/families.parquet` with the vectors."""
    params, paths = context.params.families, context.paths
    table = context.input_table(paths.deduped, "dedup", "deduped").reset_index(drop=True)
    rows_in, responses_in = Counter(table["source"]), responses_of(table)
    texts = [user_text(m) for m in table["messages"]]
    references = References.load(context)
    model = resolve_model(params.model, paths.cache, context.params_file.error)
    engine = context.params.engine
    embedder = Embedder(model, paths.cache, params.device, params.batch_size,
                        params.num_threads, context.params_file.error,
                        Engine(engine.kind, engine.address) if engine.kind == "ray" else None)
    both = embedder.embed(texts + references.texts)  # one pass over the cache
    vectors, ref_vectors = both[:len(texts)], both[len(texts):]
    minhash = MinHashParams.of(context.params.dedup)
    sketches = load_sketches(paths.signatures, table["id"].tolist())
    search = SearchParams.of(params)

    ledger = StageLedger(STAGE)
    dropped: Counter[str] = Counter()
    closest = closest_references(
        vectors, sketches, ref_vectors, sketch(references.texts, minhash), references,
        dataclasses.replace(minhash, threshold=min(params.contamination.jaccard,
                                                   minhash.threshold / 2)), search)
    causes = with_look_alikes(contamination_causes(closest, len(table), params), table)
    _drop_contaminated(table, causes, references, ledger, dropped)
    keep = np.setdiff1d(np.arange(len(table)), causes["row"].to_numpy() if len(causes) else [])
    table, vectors, sketches = table.iloc[keep].reset_index(drop=True), vectors[keep], \
        sketches.take(keep)

    pairs, scores = neighbours(vectors, search, -1.0)  # every neighbour: split reuses them
    close = scores >= params.cosine
    lexical = _lexical_pairs(sketches, minhash, params, context.params.dedup)
    # Lexical links first (score 2, above any cosine), then cosine links, strongest first;
    # both stop at max_family_size, so templated prompts cannot chain into one family.
    found = link(vectors, _declared_edges(table),
                 np.concatenate([lexical, pairs[close]]),
                 np.concatenate([np.full(len(lexical), 2.0, np.float32), scores[close]]),
                 params.cosine, params.max_family_size)
    linked_ids = table["id"].to_numpy()
    table = table.assign(family_id=table["id"].to_numpy()[found.labels])
    if params.paraphrases == "remove":
        table, vectors = _drop_paraphrases(table, vectors, found.labels,
                                           context.params.dedup.source_priority, ledger,
                                           dropped)
    table = table.assign(family_size=table.groupby("family_id")["id"].transform("size")
                         .astype(np.int64))
    table["family_id"] = table.groupby("family_id")["id"].transform("min")

    valid, failures = validate_rows(table, load_schema("families"))
    if not failures.empty:
        broken = table.iloc[failures["index"]]
        dropped["item_quarantined"] += responses_of(broken)
        ledger.drop(broken, "quarantined", failures["check"], field=failures["field"],
                    detail=failures["detail"])
        vectors = vectors[np.setdiff1d(np.arange(len(table)), failures["index"].to_numpy())]
    ledger.count_responses(responses_in, responses_of(valid), **dropped)
    summary = ledger.summary(rows_in, Counter(valid["source"]))
    report = families_report(found.stats, closest, causes, references, embedder,
                             model_name(params), valid, params)
    with StagedWrites() as out:
        out.parquet(to_arrow(valid, context.vocabulary.arrow_type()), paths.families)
        out.parquet(embeddings_table(valid["id"].tolist(), vectors), paths.embeddings)
        out.parquet(neighbours_table(*_kept_pairs(pairs, scores, linked_ids, valid["id"])),
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


def _kept_pairs(pairs: np.ndarray, scores: np.ndarray, ids: np.ndarray,
                kept: pd.Series) -> tuple[np.ndarray, np.ndarray]:
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
        pairs, _ = candidate_pairs(band_keys(both.signatures, search_from.bands),
                                   both.sketched, _MAX_BUCKET)
        cross = pairs[(pairs[:, 0] < n) & (pairs[:, 1] >= n)].tolist()  # item, reference
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
                               dedup.max_bucket_size)
    return pairs[sketches.reaching(pairs, params.jaccard)]


def _drop_paraphrases(table: pd.DataFrame, vectors: np.ndarray, labels: np.ndarray,
                      source_priority: list[str], ledger: StageLedger,
                      dropped: Counter[str]) -> tuple[pd.DataFrame, np.ndarray]:
    """One item per (family, expected behaviour); the others are semantic duplicates, their
    responses dropped with them (they answered another prompt)."""
    groups = pd.Series(list(zip(labels.tolist(), table["expected_behavior"], strict=True)))
    members = pa.table({"row": np.arange(len(table)), "label": groups.factorize()[0],
                        "id": pa.array(table["id"], pa.string()),
                        "source": pa.array(table["source"], pa.string()),
                        "has_response": (table["responses"].map(len) > 0).to_numpy()})
    rep = representatives(members, tuple(source_priority))
    gone = rep != np.arange(len(table))
    if gone.any():
        cosine = cosines(vectors, np.column_stack([np.flatnonzero(gone), rep[gone]]))
        rows = table[gone]
        dropped["item_semantic_duplicate"] += responses_of(rows)
        ledger.drop(rows, "duplicate", "semantic_duplicate",
                    duplicate_of=pd.Series(table["id"].to_numpy()[rep[gone]]),
                    detail=pd.Series([f"cosine {c:.3f} to its family's representative"
                                      for c in cosine]))
    # A benign look-alike whose harmful twin left points to the twin's representative.
    kept_for = dict(zip(table["id"].to_numpy()[gone], table["id"].to_numpy()[rep[gone]],
                        strict=True))
    table = table.assign(contrast_of=table["contrast_of"].map(lambda t: kept_for.get(t, t)))
    return table[~gone].reset_index(drop=True), vectors[~gone]


def families_report(stats: dict[str, Any], closest: dict[str, pd.DataFrame],
                    causes: pd.DataFrame, references: References, embedder: Embedder,
                    model: str, kept: pd.DataFrame, params: FamiliesParams) -> dict[str, Any]:
    """The figures of `reports/families.json`: families, contamination per reference set,
    and the model the embeddings came from."""
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
        "families_with_several_items": int((kept.groupby("family_id").size() > 1).sum()),
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
