"""Push items to Argilla: one record per item, keyed by item id (pushing again updates,
never duplicates), with a suggestion: the source category map's domain where it has
one, else the suggestion model's, with its score and margin as metadata. The dataset URL
printed after a push sorts the queue by that margin, so annotators start with the items
the model is least sure of."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import argilla as rg
import pandas as pd
from tqdm import tqdm

from curation.annotation.agreement import DOMAIN_QUESTION
from curation.annotation.settings import (
    AnnotationConfig,
    ensure_dataset,
    item_settings,
    response_settings,
)
from curation.core.errors import CurationError
from curation.core.items import response_id
from curation.core.ledger import DROPPED_COLUMNS
from curation.core.paths import Paths
from curation.core.schemas import load_schema
from curation.core.tableio import read_input
from curation.core.taxonomy import Taxonomy
from curation.sources.spec import Source

# The web UI's sort (its URL form) that starts an annotator's queue where the model is
# least sure: without a sort, Argilla shuffles each annotator's queue.
LEAST_SURE_FIRST = "metadata.suggestion_margin.asc"


def items_to_push(paths: Paths, everything: bool) -> pd.DataFrame:
    """The items to label, each with its model suggestion (columns `suggestion`, `score`,
    `margin`), lowest margin first; unless `everything`, only those the label stage left
    unlabeled (what annotators are needed for)."""
    table = read_input(paths.families, "families", load_schema("families").columns)
    if not everything:
        unlabeled = read_input(paths.dropped("label"), "label", DROPPED_COLUMNS)
        todo = unlabeled.loc[unlabeled["reason"] == "unlabeled", "id"]
        table = table[table["id"].isin(todo)]
    suggestions = read_input(paths.suggestions, "suggest", load_schema("suggestions").columns)
    table = table.merge(suggestions[["id", "suggestion", "score", "margin"]], on="id",
                        how="left", validate="one_to_one")
    return table.sort_values(["margin", "id"], na_position="last",
                             kind="stable").reset_index(drop=True)


def conversation(messages: list[dict[str, str]]) -> list[dict[str, str]]:
    """A ChatField value: the turns, as role and content."""
    return [{"role": m["role"], "content": m["content"]} for m in messages]


def item_records(table: pd.DataFrame, sources: list[Source], domain_question_id: str,
                 agent: str) -> Iterator[dict[str, Any]]:
    """One record per item (the bulk API's JSON), keyed by item id, with the source
    category map's domain as a suggestion, else the model's with its score."""
    by_name = {s.name: s for s in sources}
    for row in table.itertuples(index=False):
        category = row.source_category if isinstance(row.source_category, str) else None
        metadata: dict[str, Any] = {"source": row.source, "language": row.language,
                                    "expected_behavior": row.expected_behavior,
                                    "dup_cluster_size": int(row.dup_cluster_size)}
        if category is not None:
            metadata["source_category"] = category
        source = by_name.get(row.source)
        domain = source.domain_of(category) if source is not None else None
        if domain:
            suggestions = [{"question_id": domain_question_id, "value": domain,
                            "type": "human", "agent": f"category map of source {row.source}"}]
        elif isinstance(row.suggestion, str):
            suggestions = [{"question_id": domain_question_id, "value": row.suggestion,
                            "type": "model", "agent": agent, "score": float(row.score)}]
            metadata.update(suggestion_score=float(row.score),
                            suggestion_margin=float(row.margin))
        else:
            suggestions = []
        yield {"external_id": row.id, "fields": {"conversation": conversation(row.messages)},
               "metadata": metadata, "suggestions": suggestions}


def response_records(table: pd.DataFrame) -> Iterator[dict[str, Any]]:
    """One record per response, keyed by response id: the conversation and the response."""
    for row in table.itertuples(index=False):
        for response in row.responses:
            yield {"external_id": response_id(row.id, response),
                   "fields": {"conversation": conversation(row.messages),
                              "response": response["text"]},
                   "metadata": {"source": response["source"],
                                "model": response.get("model") or "unknown",
                                "expected_behavior": row.expected_behavior,
                                "turns": len(row.messages)}}


def push(client: rg.Argilla, table: pd.DataFrame, sources: list[Source], taxonomy: Taxonomy,
         params: AnnotationConfig, agent: str) -> dict[str, Any]:
    """Create or update both datasets' records, keyed by item and response id.

    Records go through the bulk REST endpoint, not `dataset.records.log`: the SDK parses
    the records it gets back, and crashes on a response discarded without values.
    """
    items = ensure_dataset(client, params.dataset, item_settings(taxonomy, params), params)
    question_id = str(next(q.id for q in items.settings.questions
                           if q.name == DOMAIN_QUESTION))
    _push_all(client, items, item_records(table, sources, question_id, agent), len(table),
              params)
    mapped = mapped_items(table, sources)
    counts = {"pushed": len(table), "records_in_dataset": record_count(client, items),
              "suggested_by_category_map": int(mapped.sum()),
              "suggested_by_model": int((table["suggestion"].notna() & ~mapped).sum()),
              "url": f"{client.api_url.rstrip('/')}/dataset/{items.id}/annotation-mode"
                     f"?sort={LEAST_SURE_FIRST}"}
    if params.refusal_rubric:
        responses = ensure_dataset(client, params.responses_dataset, response_settings(params),
                                   params)
        total = int(table["responses"].map(len).sum())
        _push_all(client, responses, response_records(table), total, params)
        counts.update(responses_pushed=total,
                      records_in_responses_dataset=record_count(client, responses))
    return counts


def mapped_items(table: pd.DataFrame, sources: list[Source]) -> pd.Series:
    """Which items get their category map's domain as the suggestion."""
    by_name = {s.name: s for s in sources}
    return pd.Series([isinstance(category, str) and name in by_name
                      and by_name[name].domain_of(category) is not None
                      for name, category in zip(table["source"], table["source_category"],
                                                strict=True)], index=table.index, dtype=bool)


def _push_all(client: rg.Argilla, dataset: rg.Dataset, records: Iterator[dict[str, Any]],
              total: int, params: AnnotationConfig) -> None:
    batch: list[dict[str, Any]] = []
    with tqdm(total=total, desc=f"push {dataset.name}", unit=" records", disable=None) as bar:
        for record in records:
            batch.append(record)
            if len(batch) == params.batch_size:
                _upsert(client, dataset, batch)
                bar.update(len(batch))
                batch = []
        if batch:
            _upsert(client, dataset, batch)
            bar.update(len(batch))


def _upsert(client: rg.Argilla, dataset: rg.Dataset, batch: list[dict[str, Any]]) -> None:
    answer = client.http_client.put(f"/api/v1/datasets/{dataset.id}/records/bulk",
                                    json={"items": batch})
    if answer.status_code >= 400:
        raise CurationError(f"Argilla refused records {batch[0]['external_id']}..: "
                            f"HTTP {answer.status_code} {answer.text[:200]}",
                            file=f"Argilla dataset {dataset.name}")


def record_count(client: rg.Argilla, dataset: rg.Dataset) -> int:
    answer = client.http_client.get(f"/api/v1/datasets/{dataset.id}/records",
                                    params={"offset": 0, "limit": 1})
    return int(answer.raise_for_status().json()["total"])
