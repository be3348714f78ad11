"""Stage `label`: one risk domain per item, from annotators where they agree, else from
the source's category map (`curation.annotation.labels`), else, only when a curator sets
`label.accept_model_above`, from the suggestion model at that score or more.

Items with no label are `unlabeled`; items annotators, a category map or an accepted
suggestion put out of scope are `out_of_scope`: both are filtered, and unlabeled items
are what annotators get next. Every kept response gets its automatic `signals` (refusal, referral:
`curation.core.signals`) and the annotators' rubric judgments from the responses dataset,
aggregated (`annotated`, with answer counts in `annotated_n`); `reports/signals.json`
measures the refusal rule against the human refusal labels the sources ship.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pandas as pd

from curation.annotation.agreement import (
    DOMAIN_QUESTION,
    PHASE_QUESTION,
    TURN_QUESTION,
    agreement,
    rubric,
)
from curation.annotation.labels import assign_labels, read_annotations
from curation.core.errors import CurationError
from curation.core.items import response_id, responses_of, to_arrow
from curation.core.judgments import Vocabulary
from curation.core.ledger import StageLedger
from curation.core.schemas import load_schema, validate_rows
from curation.core.signals import Detectors, load_detectors
from curation.core.tableio import StagedWrites, read_input
from curation.sources.spec import load_sources
from curation.stages.base import Context, StageResult

STAGE = "label"
NO_DETAIL = {"grounding_strategies": [], "refusal_turn": None, "refusal_turn_n": 0,
             "refusal_phase": None, "refusal_phase_n": 0}
OUT_OF_SCOPE_BY = {"annotation": "annotators: no domain applies",
                   "source_map": "category map: out of scope",
                   "model": "suggestion model: out of scope, above label.accept_model_above"}


def run(context: Context) -> StageResult:
    """Give each item its domain and write the labeled table, dropped rows and report."""
    params, paths = context.params.label, context.paths
    domains = context.taxonomy.domain_ids
    annotations = read_annotations(paths.annotations_dir, set(context.category_labels))
    table = context.input_table(paths.families, "families", "families")
    sources = load_sources(context.sources_folder, context.category_labels,
                           tuple(context.vocabulary.by_name()))
    labeled, mapped, annotation, votes = assign_labels(table, sources, annotations,
                                                       params.min_submitted)
    suggestions = read_input(paths.suggestions, "suggest",
                             load_schema("suggestions").columns).set_index("id")
    missing = ~table["id"].isin(suggestions.index)
    if len(suggestions) and missing.any():
        raise CurationError(f"no suggestion for item {table.loc[missing, 'id'].iloc[0]} of "
                            "data/families.parquet; run `curate suggest` again",
                            file=str(paths.suggestions), field="id")
    labeled = with_model_labels(labeled, suggestions, params.accept_model_above)
    ledger = StageLedger(STAGE)
    out_of_scope = labeled["domain"] == params.out_of_scope_label
    ledger.drop(labeled[out_of_scope], "filtered", "out_of_scope", field="domain",
                detail=labeled.loc[out_of_scope, "label_source"].map(OUT_OF_SCOPE_BY)
                .reset_index(drop=True))
    unlabeled = labeled["domain"].isna()
    pending = labeled["n_annotations"].to_numpy() > 0
    ledger.drop(labeled[unlabeled], "filtered", "unlabeled", field="domain",
                detail=pd.Series(np.where(pending[unlabeled], "annotations pending or tied",
                                          "no annotation and no mapped category")))
    detectors = load_detectors(paths.schemas_dir / "signals.yaml", context.taxonomy)
    kept = labeled[~(out_of_scope | unlabeled)].reset_index(drop=True)
    kept["responses"] = with_signals_and_rubric(kept, detectors,
                                                rubric(annotations, context.vocabulary),
                                                context.vocabulary)
    kept = kept.astype({"domain": "str", "label_source": "str"})
    valid, failures = validate_rows(kept, load_schema("labeled"))
    if not failures.empty:
        ledger.drop(kept.iloc[failures["index"]], "quarantined", failures["check"],
                    field=failures["field"], detail=failures["detail"])
    taken_in, kept_responses = responses_of(table), responses_of(valid)
    filtered = responses_of(labeled[out_of_scope | unlabeled])
    ledger.count_responses(taken_in, kept_responses, item_filtered=filtered,
                           item_quarantined=taken_in - kept_responses - filtered)
    summary = ledger.summary(Counter(table["source"]), Counter(valid["source"]))
    report = label_report(labeled, mapped, annotation, votes, valid, domains)
    report["model"] = model_report(labeled, annotation, mapped, suggestions,
                                   params.accept_model_above)
    report["rubric"] = rubric_report(annotations, valid, context.vocabulary)
    report["agreement"] = ([agreement(annotations, DOMAIN_QUESTION, ordinal=False)]
                           if (annotations["question"] == DOMAIN_QUESTION).any() else []
                           ) + report["rubric"]["agreement"]
    signals = signals_report(table, detectors)
    with StagedWrites() as out:
        out.parquet(to_arrow(valid, context.vocabulary.arrow_type(), labelled=True),
                    paths.labeled)
        ledger.write(out, paths, summary, label_figures(report, signals))
        out.csv(["question", "krippendorff_alpha"],
                [[f["question"], f["krippendorff_alpha"]] for f in report["agreement"]],
                paths.plot("agreement"))
        out.json(report, paths.report("labels"))
        out.json(signals, paths.report("signals"))
    return StageResult(STAGE, summary, report, [
        "domains: " + ", ".join(f"{d} {sum(v.values())}" for d, v in report["by_domain"].items()),
        f"disagreements between annotators and category maps: {len(report['disagreements'])}"])


def label_figures(report: dict[str, Any], signals: dict[str, Any]) -> dict[str, Any]:
    """The label stage's metrics: items per domain and provenance, agreement, the
    refusal rule against people."""
    return {**{f"domain_{d}": sum(v.values()) for d, v in report["by_domain"].items()},
            **{f"by_{k}": report["by_label_source"].get(k, 0)
               for k in ("annotation", "source_map", "model")},
            "mean_agreement": report["mean_agreement"],
            "responses_annotated": report["rubric"]["responses_annotated"],
            "refusal_rule_precision": signals["refusal_vs_human"]["precision"],
            "refusal_rule_recall": signals["refusal_vs_human"]["recall"]}


def with_signals_and_rubric(items: pd.DataFrame, detectors: Detectors,
                            judged: dict[str, dict[str, Any]],
                            vocabulary: Vocabulary) -> list[list[dict[str, Any]]]:
    """Each item's responses, each with its automatic signals and the annotators' rubric
    (none yet: every judgment null, with 0 answers)."""
    zero = {j.name: 0 for j in vocabulary.judgments}
    done = []
    for item, responses in zip(items["id"], items["responses"], strict=True):
        enriched = []
        for response in responses:
            found = judged.get(response_id(item, response), {})
            enriched.append({**response, "signals": detectors.of(response["text"]),
                             "annotated": found.get("annotated", {}),
                             "annotated_n": {**zero, **found.get("annotated_n", {})},
                             "annotated_detail": found.get("annotated_detail", NO_DETAIL)})
        done.append(enriched)
    return done


def rubric_report(annotations: pd.DataFrame, kept: pd.DataFrame,
                  vocabulary: Vocabulary) -> dict[str, Any]:
    """The annotators' rubric: how many kept responses it reached, and the agreement per
    judgment and on the first refusing turn and its phase (ordinal for ratings and turns,
    nominal for yes/no and phases)."""
    kinds = {j.name: j.type for j in vocabulary.judgments}
    kinds.update({TURN_QUESTION: "int", PHASE_QUESTION: "bool"})  # ordinal; nominal
    names = [name for name in kinds if (annotations["question"] == name).any()]
    reached = sum(any(n for n in r["annotated_n"].values()) for rs in kept["responses"]
                  for r in rs)
    return {"responses_annotated": reached,
            "agreement": [agreement(annotations, name, ordinal=kinds[name] != "bool")
                          for name in names]}


def signals_report(table: pd.DataFrame, detectors: Detectors) -> dict[str, Any]:
    """How the refusal rule agrees with the human refusal labels sources ship
    (`judgments.is_refusal`), over every response before labelling, and how often each
    rule fires."""
    responses = [r for rs in table["responses"] for r in rs]
    found = [(detectors.refusal(r["text"]), detectors.referral(r["text"]),
              (r.get("judgments") or {}).get("is_refusal"), r["source"]) for r in responses]
    judged = [(rule, human) for rule, _, human, _ in found if human is not None]
    tp = sum(rule and human for rule, human in judged)
    fp = sum(rule and not human for rule, human in judged)
    fn = sum(human and not rule for rule, human in judged)
    return {
        "responses": len(found),
        "refusal_detected": sum(f[0] for f in found),
        "referral_detected": sum(f[1] for f in found),
        "refusal_vs_human": {
            "responses": len(judged), "sources": sorted({f[3] for f in found
                                                         if f[2] is not None}),
            "precision": round(tp / (tp + fp), 4) if tp + fp else None,
            "recall": round(tp / (tp + fn), 4) if tp + fn else None,
            "true_positive": tp, "false_positive": fp, "false_negative": fn},
    }


def with_model_labels(labeled: pd.DataFrame, suggestions: pd.DataFrame,
                      threshold: float | None) -> pd.DataFrame:
    """Unlabelled items no annotator has answered yet whose suggestion scores `threshold`
    or more take it, as `label_source: model` with its score in `label_score` (null for
    people's labels). Items with pending or tied answers wait for people."""
    found = suggestions.reindex(labeled["id"])
    score = found["score"].to_numpy(dtype="float64")
    accept = (labeled["domain"].isna().to_numpy() & (labeled["n_annotations"].to_numpy() == 0)
              & (score >= threshold) if threshold is not None
              else np.zeros(len(labeled), dtype=bool))
    return labeled.assign(
        domain=labeled["domain"].where(~accept, found["suggestion"].to_numpy(dtype=object)),
        label_source=np.where(accept, "model", labeled["label_source"].to_numpy(dtype=object)),
        label_score=np.where(accept, score, np.nan))


def model_report(labeled: pd.DataFrame, annotation: pd.Series, mapped: pd.Series,
                 suggestions: pd.DataFrame, threshold: float | None) -> dict[str, Any]:
    """What the suggestion model labelled, and how it agrees with people on items both
    labelled (out-of-fold suggestions at the acceptance threshold, or all without one)."""
    found = suggestions.reindex(labeled["id"])
    honest = found["out_of_fold"].fillna(False).to_numpy(dtype=bool)
    if threshold is not None:
        honest = honest & (found["score"].to_numpy(dtype="float64") >= threshold)
    suggested = pd.Series(found["suggestion"].to_numpy(dtype=object), index=labeled.index)

    def agreement_with(people: pd.Series) -> dict[str, Any]:
        both = honest & people.notna().to_numpy()
        agree = int((suggested[both] == people[both]).sum())
        return {"items": int(both.sum()), "agree": agree,
                "rate": round(agree / both.sum(), 4) if both.any() else None}

    by_model = labeled[labeled["label_source"] == "model"]
    return {"accept_above": threshold, "accepted": len(by_model),
            "by_label": {k: int(v) for k, v in
                         by_model["domain"].value_counts().sort_index().items()},
            "agreement_with_annotators": agreement_with(annotation),
            "agreement_with_category_maps": agreement_with(mapped)}


def label_report(labeled: pd.DataFrame, mapped: pd.Series, annotation: pd.Series,
                 votes: pd.DataFrame, kept: pd.DataFrame,
                 domains: tuple[str, ...]) -> dict[str, Any]:
    """Counts by domain and provenance, and where annotators and category maps disagree."""
    disagree = annotation.notna() & mapped.notna() & (annotation != mapped)
    by_domain = {d: {"annotation": 0, "source_map": 0, "model": 0} for d in domains}
    for (domain, source), n in kept.groupby(["domain", "label_source"]).size().items():
        by_domain[domain][source] = int(n)
    return {
        "items": len(labeled),
        "labeled": len(kept),
        "by_domain": by_domain,
        "by_label_source": {k: int(v) for k, v in
                            kept["label_source"].value_counts().sort_index().items()},
        "annotated_items": int(len(votes)),
        "awaiting_adjudication": sorted(votes.index[votes["adjudicate"] == "tie"].tolist()),
        "mean_agreement": (round(float(kept["agreement"].mean()), 4)
                           if kept["agreement"].notna().any() else None),
        "disagreements": [
            {"id": row.id, "annotation": annotation[i], "source_map": mapped[i],
             "source": row.source, "source_category": row.source_category}
            for i, row in zip(labeled.index[disagree], labeled[disagree].itertuples(),
                              strict=True)
        ],
    }
