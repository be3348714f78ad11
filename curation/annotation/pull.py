"""Pull answers from Argilla into `annotations/<dataset>.parquet` (one row per record x
annotator x question), with progress and agreement reports.

Answers are read over the REST API (`include=responses`) rather than through the SDK,
because the SDK of argilla 2.8.0 crashes on a response discarded without values.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import argilla as rg
import pandas as pd

from curation.annotation.agreement import (
    ANNOTATION_COLUMNS,
    DOMAIN_QUESTION,
    aggregate,
    agreement,
)
from curation.annotation.client import find_dataset
from curation.annotation.settings import ORDINAL_QUESTIONS, AnnotationConfig
from curation.core.errors import CurationError
from curation.core.tableio import StagedWrites
from curation.core.taxonomy import Taxonomy


def fetch_answers(client: rg.Argilla, params: AnnotationConfig,
                  name: str | None = None) -> pd.DataFrame:
    """Every answer in a dataset (default: the items dataset) as annotation rows (record x
    annotator x question).

    A response discarded without any values becomes one row with no question and no value.
    """
    name = name or params.dataset
    dataset = find_dataset(client, name, params.workspace)
    if dataset is None:
        raise CurationError(f"no Argilla dataset '{name}' in workspace "
                            f"'{params.workspace}'; run `curate annotate push` first",
                            field="annotate.dataset")
    users = {u["id"]: u["username"] for u in
             client.http_client.get("/api/v1/users").raise_for_status().json()["items"]}
    rows: list[dict[str, Any]] = []
    offset, page = 0, 1000
    while True:
        answer = client.http_client.get(
            f"/api/v1/datasets/{dataset.id}/records",
            params={"include": ["responses"], "offset": offset, "limit": page})
        items = answer.raise_for_status().json()["items"]
        for item in items:
            record_id = item.get("external_id") or item["id"]
            for response in item.get("responses") or []:
                base = {"dataset": name, "record_id": str(record_id),
                        "annotator": users.get(response["user_id"], response["user_id"]),
                        "status": response["status"]}
                values = response.get("values") or {}
                if not values:
                    rows.append({**base, "question": None, "value": None})
                for question, value in sorted(values.items()):
                    answer_value = (value or {}).get("value")
                    rows.append({**base, "question": question, "value": None
                                 if answer_value is None else _text(answer_value)})
        if len(items) < page:
            break
        offset += page
    frame = pd.DataFrame(rows, columns=ANNOTATION_COLUMNS)
    return frame.sort_values(["record_id", "annotator", "question"], kind="stable",
                             na_position="first").reset_index(drop=True).astype("str")


def _text(value: Any) -> str:
    if isinstance(value, list):
        return "; ".join(map(str, value))
    return str(value)


def pull(client: rg.Argilla, taxonomy: Taxonomy, params: AnnotationConfig,
         annotations_dir: Path, report_path: Path) -> dict[str, Any]:
    """Write `annotations/<dataset>.parquet` and the agreement report, both or neither;
    with no answer on the server yet, neither (`written` is False)."""
    answers = fetch_answers(client, params)
    allowed = {*taxonomy.domain_ids, params.out_of_scope_label}
    domain_answers = answers[answers["question"] == DOMAIN_QUESTION]
    outside = domain_answers[~domain_answers["value"].isin(allowed) & domain_answers[
        "value"].notna()]
    if not outside.empty:
        first = outside.iloc[0]
        raise CurationError(f"record {first['record_id']} by {first['annotator']}: label "
                            f"'{first['value']}' is not in the taxonomy",
                            file=f"Argilla dataset {params.dataset}", field=DOMAIN_QUESTION)
    report = annotation_report(answers, params)
    rated = None
    if find_dataset(client, params.responses_dataset, params.workspace) is not None:
        rated = fetch_answers(client, params, params.responses_dataset)
        report["response_quality"] = quality_report(rated)
    if answers.empty and (rated is None or rated.empty):
        return {**report, "written": False}  # an empty snapshot would only rerun `label`
    with StagedWrites() as out:
        out.parquet(answers, annotations_dir / f"{params.dataset}.parquet")
        if rated is not None:
            out.parquet(rated, annotations_dir / f"{params.responses_dataset}.parquet")
        out.json(report, report_path)
    return {**report, "written": True}


def quality_report(answers: pd.DataFrame) -> dict[str, Any]:
    """Answers and agreement per rubric question of the responses dataset."""
    responses = answers.drop_duplicates(["record_id", "annotator"])
    questions = sorted(q for q in answers["question"].dropna().unique())
    return {
        "records_answered": int(responses["record_id"].nunique()),
        "responses": {str(k): int(v) for k, v in
                      responses["status"].value_counts().sort_index().items()},
        "agreement": [agreement(answers, q, ordinal=q in ORDINAL_QUESTIONS)
                      for q in questions],
    }


def annotation_report(answers: pd.DataFrame, params: AnnotationConfig) -> dict[str, Any]:
    """Response counts, majority labels, the adjudication list and agreement per question."""
    responses = answers.drop_duplicates(["record_id", "annotator"])
    votes = aggregate(answers, params.min_submitted)
    questions = sorted(q for q in answers["question"].dropna().unique())
    return {
        "dataset": params.dataset,
        "records_answered": int(responses["record_id"].nunique()),
        "responses": {str(k): int(v) for k, v in
                      responses["status"].value_counts().sort_index().items()},
        "discarded_without_values": int(answers["question"].isna().sum()),
        "annotators": {a: {str(k): int(v) for k, v in group["status"].value_counts()
                           .sort_index().items()}
                       for a, group in responses.groupby("annotator", sort=True)},
        "majority_labels": {str(k): int(v) for k, v in
                            votes["annotation"].value_counts().sort_index().items()},
        "adjudication": [{"id": row.id, "reason": row.adjudicate}
                         for row in votes[votes["adjudicate"].notna()].itertuples()],
        "agreement": [agreement(answers, q, ordinal=q in ORDINAL_QUESTIONS)
                      for q in questions],
        "min_submitted": params.min_submitted,
    }


def status_tables(answers: pd.DataFrame, params: AnnotationConfig,
                  total_records: int) -> tuple[list[list[str]], list[list[str]]]:
    """Progress per annotator, and per domain (by majority label so far)."""
    responses = answers.drop_duplicates(["record_id", "annotator"])
    per_annotator = [["annotator", "submitted", "discarded", "draft"]]
    for annotator, group in responses.groupby("annotator", sort=True):
        counts = Counter(group["status"])
        per_annotator.append([annotator, *(str(counts[s]) for s in
                                           ("submitted", "discarded", "draft"))])
    votes = aggregate(answers, params.min_submitted)
    per_domain = [["domain", "records"]]
    for domain, n in votes["annotation"].fillna("(no majority yet)").value_counts(
            ).sort_index().items():
        per_domain.append([str(domain), str(n)])
    per_domain.append(["(no answers yet)", str(max(0, total_records - len(votes)))])
    return per_annotator, per_domain


def dataset_progress(client: rg.Argilla, params: AnnotationConfig
                     ) -> tuple[list[list[str]], list[list[str]], list[list[str]]]:
    """Per dataset (items, and responses when pushed): records, records answered and
    submitted answers; then `status_tables` for the items dataset."""
    from curation.annotation.push import record_count

    per_dataset = [["dataset", "records", "answered", "submitted answers"]]
    answers = None
    for name in (params.dataset, params.responses_dataset):
        dataset = find_dataset(client, name, params.workspace)
        if dataset is None:
            continue
        found = fetch_answers(client, params, name)
        answered = found.drop_duplicates(["record_id", "annotator"])
        per_dataset.append([name, str(record_count(client, dataset)),
                            str(answered["record_id"].nunique()),
                            str(int((answered["status"] == "submitted").sum()))])
        if answers is None:
            answers = found
    if answers is None:
        raise CurationError("not on the server; run `curate annotate push` first",
                            file=f"Argilla dataset {params.dataset}")
    total = int(per_dataset[1][1])
    return (per_dataset, *status_tables(answers, params, total))
