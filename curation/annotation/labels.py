"""Trusted labels: what people said an item's domain is. The annotators' majority comes
first, then the source's category map; the label stage releases them and the suggestion
model learns from them.

Annotations are the human input in `annotations/*.parquet` (one row per record x
annotator x question, pulled from Argilla). An item's annotation label is the majority
of its submitted `domain` answers, once it has at least `min_submitted` of them and no tie.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from curation.annotation.agreement import ANNOTATION_COLUMNS, aggregate, submitted
from curation.core.errors import CurationError
from curation.core.schemas import load_schema, validate_rows
from curation.core.tableio import read_input
from curation.sources.spec import Source

STATUSES = ("submitted", "draft", "discarded")  # Argilla's response statuses
_ANSWER_KEY = ["dataset", "record_id", "annotator", "question"]


def read_annotations(folder: Path, allowed: set[str]) -> pd.DataFrame:
    """Every annotation snapshot in `folder`, checked: rows must meet
    `schemas/annotations.yaml`, labels be in the taxonomy and statuses Argilla's; a row
    without a question or value (left open) is no vote. An answer found again (the same
    snapshot twice) counts once; one annotator answering one question twice, differently,
    is an error: it would be two votes from one person."""
    frames = []
    schema = load_schema("annotations")
    for path in sorted(folder.glob("*.parquet")):
        frame = read_input(path, "annotate pull", schema.columns, only=ANNOTATION_COLUMNS)
        _, failures = validate_rows(frame, schema)
        if not failures.empty:
            first = failures.iloc[0]
            raise CurationError(f"the answer breaks schemas/annotations.yaml "
                                f"({first['detail']})",
                                file=str(path), row=int(first["index"]) + 1,
                                field=str(first["field"]))
        frame = frame[frame["question"].notna() & frame["value"].notna()]  # no vote
        answers = submitted(frame, "domain")
        unknown = answers[~answers["value"].isin(allowed)]
        if not unknown.empty:
            row = int(unknown.index[0]) + 1
            raise CurationError(f"label '{unknown['value'].iloc[0]}' is not in the taxonomy",
                                file=str(path), row=row, field="value")
        odd = frame[~frame["status"].isin(STATUSES)]
        if not odd.empty:
            raise CurationError(f"status '{odd['status'].iloc[0]}' is not one of "
                                f"{', '.join(STATUSES)}", file=str(path),
                                row=int(odd.index[0]) + 1, field="status")
        frames.append(frame[ANNOTATION_COLUMNS].assign(_file=str(path),
                                                       _row=frame.index.to_numpy() + 1))
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="str") for c in ANNOTATION_COLUMNS})
    table = pd.concat(frames, ignore_index=True)
    table = table[~table.duplicated(ANNOTATION_COLUMNS)]
    votes = table[table["status"] == "submitted"]  # drafts and discards are no votes
    again = votes[votes.duplicated(_ANSWER_KEY)]
    if not again.empty:
        second = again.iloc[0]
        first = votes[(votes[_ANSWER_KEY] == second[_ANSWER_KEY]).all(axis=1)].iloc[0]
        raise CurationError(
            f"annotator '{second['annotator']}' answers '{second['question']}' for record "
            f"{second['record_id']} again, otherwise than in {first['_file']}, row "
            f"{first['_row']} (keep one snapshot of each dataset)", file=second["_file"],
            row=int(second["_row"]), field="value")
    return table[ANNOTATION_COLUMNS].reset_index(drop=True)


def mapped_domains(table: pd.DataFrame, sources: list[Source]) -> pd.Series:
    """Each item's label from its source's category map (None where the map is silent)."""
    by_name = {s.name: s for s in sources}
    unknown = sorted(set(table["source"]) - set(by_name))
    if unknown:
        raise CurationError(f"rows come from source '{unknown[0]}', which has no source file",
                            file="sources", field="source")
    categories = table["source_category"].astype(object)
    return pd.Series([by_name[s].domain_of(c) for s, c in
                      zip(table["source"], categories.where(categories.notna(), None),
                          strict=True)], index=table.index, dtype="object")


def vote_table(annotations: pd.DataFrame, min_submitted: int) -> pd.DataFrame:
    """Per item id: its submitted domain answers aggregated (`aggregate`)."""
    return aggregate(annotations, min_submitted).set_index("id")


def assign_labels(table: pd.DataFrame, sources: list[Source], votes: pd.DataFrame
                  ) -> tuple[pd.DataFrame, pd.Series, pd.Series]:
    """Each item's domain (annotation majority, else category map) and its provenance;
    also the mapped and annotated domains apart, for the report. `votes`: `vote_table`."""
    mapped = mapped_domains(table, sources)
    joined = votes.reindex(table["id"])
    annotation = pd.Series(joined["annotation"].to_numpy(dtype=object), index=table.index)
    annotation = annotation.where(annotation.notna(), None)
    domain = annotation.where(annotation.notna(), mapped)
    labeled = table.assign(
        domain=domain,
        label_source=np.where(annotation.notna(), "annotation",
                              np.where(mapped.notna(), "source_map", None)),
        n_annotations=joined["n_annotations"].fillna(0).astype("int64").to_numpy(),
        agreement=joined["agreement"].to_numpy(dtype="float64"),
    )
    return labeled, mapped, annotation
