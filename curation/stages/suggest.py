"""Stage `suggest`: the suggestion model's domain (or out of scope) and calibrated score
for every item, learnt from the trusted labels (annotations, then category maps) over
the families stage's embeddings.

Annotators get the suggestions, most informative (lowest margin) first; the label stage
accepts them only above `label.accept_model_above`. Items with a trusted label get an
out-of-fold suggestion, so their agreement with people is an honest measurement.
`reports/suggest.json` scores the model on whole sources it never saw.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from curation.annotation.labels import assign_labels, read_annotations, vote_table
from curation.annotation.suggest import evaluate, fit, pooled, top_two
from curation.core.config import ModelParams
from curation.core.errors import CurationError
from curation.core.schemas import load_schema, validate_rows
from curation.core.tableio import StagedWrites
from curation.neardup.store import load_embeddings
from curation.sources.spec import load_sources
from curation.stages.base import Context, StageResult

STAGE = "suggest"
THRESHOLDS = (0.5, 0.7, 0.8, 0.9, 0.95)  # scores at which the report counts acceptances


def agent(model: ModelParams) -> str:
    """The suggestions' agent in Argilla: the classifier and the embedding model it reads
    (in the characters Argilla allows in an agent: letters, digits, - _ : . / and spaces)."""
    if model.pypi is not None:
        name = f"{model.pypi.package} {model.pypi.version}"
    elif model.hub is not None:
        name = model.hub + (f" revision {model.revision}" if model.revision else "")
    else:
        name = str(model.folder)
    text = f"refusal-curation suggest: logistic regression on {name}"
    return re.sub(r"[^a-zA-Z0-9\-_:./\s]", "-", text)[:200]


def run(context: Context) -> StageResult:
    """Fit on the trusted labels, suggest for every item, evaluate by held-out source."""
    params, paths = context.params.suggest, context.paths
    labels = context.category_labels
    table = context.input_table(paths.families, "families", "families",
                                only=["id", "source", "source_category", "family_id"])
    annotations = read_annotations(paths.annotations_dir, set(labels))
    sources = load_sources(context.sources_folder, labels, tuple(context.vocabulary.by_name()))
    labeled, *_ = assign_labels(table, sources,
                                vote_table(annotations, context.params.label.min_submitted))
    vectors = load_embeddings(paths.embeddings, table["id"].tolist()).astype(np.float64)
    trusted = labeled["domain"].notna().to_numpy()
    truth = labeled.loc[trusted, "domain"].to_numpy(dtype=str)
    groups = labeled["family_id"].to_numpy(dtype=str)
    report: dict[str, Any] = {
        "agent": agent(context.params.families.model),
        "trained_on": dict(sorted(Counter(truth.tolist()).items())),
        "unlabelled": int((~trusted).sum())}
    if len(set(truth.tolist())) < 2:
        suggestions = pd.DataFrame({"id": pd.Series(dtype="str"),
                                    "suggestion": pd.Series(dtype="str"),
                                    "score": pd.Series(dtype="float64"),
                                    "margin": pd.Series(dtype="float64"),
                                    "out_of_fold": pd.Series(dtype="bool")})
        report["trained"] = False
        lines = ["no suggestions: the trusted labels hold fewer than two classes"]
    else:
        # every item trusted: the final model reads `vectors` itself, not a copy of it
        rows = None if trusted.all() else np.flatnonzero(trusted)
        model, held_out, scored = fit(vectors, truth, groups[trusted], params.folds,
                                      params.regularization, params.seed, rows)
        probabilities = model.probabilities(vectors)
        out_of_fold = trusted.copy()
        out_of_fold[trusted] = scored
        probabilities[out_of_fold] = held_out[scored]
        best, score, margin = top_two(probabilities, model.classes)
        suggestions = pd.DataFrame({"id": table["id"].to_numpy(dtype=str), "suggestion": best,
                                    "score": np.round(score, 6),
                                    "margin": np.round(margin, 6), "out_of_fold": out_of_fold})
        evaluation = evaluate(vectors, truth, groups[trusted],
                              labeled.loc[trusted, "source"].to_numpy(dtype=str),
                              params.folds, params.regularization, params.seed, rows)
        seen, seen_score, _ = top_two(held_out[scored], model.classes)
        report.update(trained=True, classes=list(model.classes),
                      temperature=model.temperature,
                      out_of_fold=pooled(truth[scored].tolist(), seen, seen_score),
                      held_out_sources=evaluation,
                      acceptance=acceptance(suggestions[
                          ~trusted & (labeled["n_annotations"].to_numpy() == 0)]))
        lines = [f"suggestions for {int((~trusted).sum())} unlabelled items; macro-F1 "
                 f"{report['out_of_fold']['macro_f1']} out of fold, {evaluation['macro_f1']} "
                 f"on held-out sources (ECE {report['out_of_fold']['expected_calibration_error']}"
                 f", {evaluation['expected_calibration_error']})",
                 "at score >= " + ", ".join(f"{a['score_at_least']}: {a['items']}"
                                            for a in report["acceptance"])]
    valid, failures = validate_rows(suggestions, load_schema("suggestions"))
    if not failures.empty:  # the model's own output: off-contract is a defect, not input
        first = failures.iloc[0]
        raise CurationError(f"a suggestion is off its schema: {first['detail']}",
                            file=str(paths.suggestions), row=int(first["index"]) + 1,
                            field=str(first["field"]))
    with StagedWrites() as out:
        out.parquet(valid, paths.suggestions)
        out.json(report, paths.report("suggest"))
        out.json(suggest_figures(report), paths.metrics(STAGE))
        out.csv(["mean_score", "accuracy", "items"],
                [[b["mean_score"], b["accuracy"], b["items"]]
                 for b in report.get("out_of_fold", {}).get("reliability", [])],
                paths.plot("suggestion_reliability"))
    return StageResult(STAGE, None, report, lines)


def acceptance(unlabelled: pd.DataFrame) -> list[dict[str, Any]]:
    """How many unlabelled items each threshold would accept, per suggested label (items
    with pending or tied answers wait for people, as in the label stage)."""
    return [{"score_at_least": t, "items": int((unlabelled["score"] >= t).sum()),
             "by_label": {k: int(v) for k, v in unlabelled.loc[
                 unlabelled["score"] >= t, "suggestion"].value_counts().sort_index().items()}}
            for t in THRESHOLDS]


def suggest_figures(report: dict[str, Any]) -> dict[str, Any]:
    """The suggest stage's metrics: its quality and what a 0.9 threshold would accept."""
    if not report["trained"]:
        return {"unlabelled": report["unlabelled"], "macro_f1_out_of_fold": None,
                "macro_f1_held_out_sources": None, "calibration_error": None,
                "accepted_at_0_9": None}
    at = {a["score_at_least"]: a["items"] for a in report["acceptance"]}
    return {"unlabelled": report["unlabelled"],
            "macro_f1_out_of_fold": report["out_of_fold"]["macro_f1"],
            "macro_f1_held_out_sources": report["held_out_sources"]["macro_f1"],
            "calibration_error": report["out_of_fold"]["expected_calibration_error"],
            "accepted_at_0_9": at[0.9]}
