"""Annotation aggregation and agreement: majority labels, the adjudication list, the
rubric judgments per response, and Krippendorff's alpha and pairwise Cohen's kappa per
question.

Input is the annotation table of `annotations/*.parquet`: one row per record x annotator x
question with `value` and `status`; only submitted answers count.
"""

from __future__ import annotations

from collections import Counter
from itertools import combinations
from typing import Any

import krippendorff
import numpy as np
import pandas as pd
from sklearn.metrics import cohen_kappa_score

from curation.core.judgments import Vocabulary

ANNOTATION_COLUMNS = ["dataset", "record_id", "annotator", "question", "value", "status"]
DOMAIN_QUESTION = "domain"
# Rubric questions outside the judgment vocabulary: the strategy a grounded response draws
# on (free text), and the turn that refuses first and its phase of the refusal experience.
STRATEGY_QUESTION, TURN_QUESTION, PHASE_QUESTION = (
    "grounding_strategy", "refusal_turn", "refusal_phase")


def submitted(annotations: pd.DataFrame, question: str) -> pd.DataFrame:
    return annotations[(annotations["question"] == question)
                       & (annotations["status"] == "submitted")]


def aggregate(annotations: pd.DataFrame, min_submitted: int,
              question: str = DOMAIN_QUESTION) -> pd.DataFrame:
    """Per record: its submitted-answer count, majority label (None on a tie or with fewer
    than `min_submitted` answers), the majority's share, and why it needs adjudication."""
    rows = []
    for record_id, votes in submitted(annotations, question).groupby("record_id",
                                                                     sort=True)["value"]:
        counts = Counter(votes).most_common()
        top = counts[0][1]
        tied = len(counts) > 1 and counts[1][1] == top
        enough = len(votes) >= min_submitted
        rows.append({"id": record_id, "n_annotations": len(votes),
                     "annotation": counts[0][0] if enough and not tied else None,
                     "agreement": top / len(votes),
                     "adjudicate": "tie" if enough and tied else (
                         None if enough else "too_few_answers")})
    columns = {"id": "str", "n_annotations": "int64", "annotation": "str",
               "agreement": "float64", "adjudicate": "str"}
    return pd.DataFrame(rows, columns=list(columns)).astype(columns)


def agreement(annotations: pd.DataFrame, question: str, ordinal: bool = False
              ) -> dict[str, Any]:
    """Krippendorff's alpha (nominal, or ordinal for ratings) and pairwise Cohen's kappa of
    the submitted answers to one question; None where there is too little to tell."""
    answers = submitted(annotations, question)
    table = answers.pivot_table(index="annotator", columns="record_id", values="value",
                                aggfunc="first")
    values = sorted(set(answers["value"]), key=_order_key) if ordinal else sorted(
        set(answers["value"]))
    code = {v: i for i, v in enumerate(values)}
    matrix = table.apply(lambda column: column.map(code)).to_numpy(dtype=float)
    pairable = (np.sum(~np.isnan(matrix), axis=0) >= 2).sum() if matrix.size else 0
    alpha = None
    if pairable and len(values) > 1:
        with np.errstate(invalid="ignore", divide="ignore"):  # no variation: NaN, shown None
            alpha = float(krippendorff.alpha(reliability_data=matrix, level_of_measurement=(
                "ordinal" if ordinal else "nominal"), value_domain=list(range(len(values)))))
        alpha = alpha if np.isfinite(alpha) else None
    kappas = {}
    for a, b in combinations(table.index, 2):
        both = table.loc[[a, b]].dropna(axis=1)
        if both.shape[1] >= 2 and both.stack().nunique() > 1:
            kappas[f"{a} / {b}"] = round(float(cohen_kappa_score(both.loc[a], both.loc[b])), 4)
    return {"question": question, "level": "ordinal" if ordinal else "nominal",
            "answers": int(len(answers)), "records": int(answers["record_id"].nunique()),
            "krippendorff_alpha": None if alpha is None else round(alpha, 4),
            "cohen_kappa": kappas}


def _order_key(value: str) -> tuple[int, float | str]:
    try:
        return (0, float(value))
    except ValueError:
        return (1, value)


def rubric(annotations: pd.DataFrame, vocabulary: Vocabulary) -> dict[str, dict[str, Any]]:
    """Per answered record (a response), the annotators' judgments aggregated in the
    vocabulary's names: a yes/no by majority (a tie: null), a rating by its median (the
    lower one of an even count), a number by its mean; with the answer count of each.
    An answer that is not of its judgment's type or scale is left out."""
    found: dict[str, dict[str, Any]] = {}
    for judgment in vocabulary.judgments:
        answers = submitted(annotations, judgment.name)
        for record, group in answers.groupby("record_id", sort=True):
            values = []
            for value in group["value"]:
                try:
                    values.append(judgment.coerce(value))
                except ValueError:
                    continue
            if not values:
                continue
            entry = found.setdefault(str(record), {"annotated": {}, "annotated_n": {}})
            entry["annotated"][judgment.name] = _combine(judgment.type, values)
            entry["annotated_n"][judgment.name] = len(values)
    for record, detail in rubric_detail(annotations).items():
        found.setdefault(record, {"annotated": {}, "annotated_n": {}})["annotated_detail"] = (
            detail)
    return found


def rubric_detail(annotations: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Per record, what the rubric's other questions add: the grounding strategies
    annotators named (distinct, sorted), the first refusing turn (lower median) and its
    phase (majority; a tie: null), with the answer counts of the last two."""
    found: dict[str, dict[str, Any]] = {}

    def entry(record: str) -> dict[str, Any]:
        return found.setdefault(record, {"grounding_strategies": [], "refusal_turn": None,
                                         "refusal_turn_n": 0, "refusal_phase": None,
                                         "refusal_phase_n": 0})

    for record, group in submitted(annotations, STRATEGY_QUESTION).groupby("record_id"):
        named = sorted({str(v).strip() for v in group["value"] if str(v).strip()})
        if named:
            entry(str(record))["grounding_strategies"] = named
    for record, group in submitted(annotations, TURN_QUESTION).groupby("record_id"):
        turns = [int(v) for v in group["value"] if str(v).isdigit() and int(v) >= 1]
        if turns:
            entry(str(record)).update(refusal_turn=_combine("int", turns),
                                      refusal_turn_n=len(turns))
    for record, group in submitted(annotations, PHASE_QUESTION).groupby("record_id"):
        counts = Counter(str(v) for v in group["value"]).most_common()
        tied = len(counts) > 1 and counts[1][1] == counts[0][1]
        entry(str(record)).update(refusal_phase=None if tied else counts[0][0],
                                  refusal_phase_n=int(len(group)))
    return found


def _combine(kind: str, values: list[Any]) -> Any:
    if kind == "bool":
        yes = sum(bool(v) for v in values)
        return None if 2 * yes == len(values) else 2 * yes > len(values)
    if kind == "int":
        return int(sorted(values)[(len(values) - 1) // 2])
    return float(np.mean(values))
