"""Stage `label`: one risk domain per item, from annotators where they agree, else from
the source's category map.

Annotations are the human input in `annotations/*.parquet` (one row per record x
annotator x question, pulled from Argilla). An item's annotation label is the majority
of its submitted `domain` answers, once it has at least `min_submitted` of them and no tie.
Items with neither an annotation label nor a mapped category are `unlabeled`; items
annotators marked out of scope are `out_of_scope`: both are filtered, and are what
annotators get next. Every kept response gets its automatic `signals` (refusal, referral:
`curation.core.signals`) and the annotators' rubric judgments from the responses dataset,
aggregated (`annotated`, with answer counts in `annotated_n`); `reports/signals.json`
measures the refusal rule against the human refusal labels the sources ship.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from curation.annotation.agreement import (
    ANNOTATION_COLUMNS,
    aggregate,
    agreement,
    rubric,
    submitted,
)
from curation.core.config import LabelParams
from curation.core.errors import CurationError
from curation.core.items import response_id, responses_of, to_arrow
from curation.core.judgments import Vocabulary
from curation.core.ledger import StageLedger
from curation.core.schemas import load_schema, validate_rows
from curation.core.signals import Detectors, load_detectors
from curation.core.tableio import StagedWrites, read_input
from curation.sources.spec import Source, load_sources
from curation.stages.base import Context, StageResult

STAGE = "label"


def read_annotations(folder: Path, allowed: set[str]) -> pd.DataFrame:
    """Every annotation snapshot in `folder`, checked: labels must be in the taxonomy."""
    frames = []
    for path in sorted(folder.glob("*.parquet")):
        frame = read_input(path, "annotate pull", ANNOTATION_COLUMNS)
        answers = submitted(frame, "domain")
        unknown = answers[~answers["value"].isin(allowed)]
        if not unknown.empty:
            row = int(unknown.index[0]) + 1
            raise CurationError(f"label '{unknown['value'].iloc[0]}' is not in the taxonomy",
                                file=str(path), row=row, field="value")
        frames.append(frame[ANNOTATION_COLUMNS])
    if not frames:
        return pd.DataFrame({c: pd.Series(dtype="str") for c in ANNOTATION_COLUMNS})
    return pd.concat(frames, ignore_index=True)


def run(context: Context) -> StageResult:
    """Give each item its domain and write the labeled table, dropped rows and report."""
    params, paths = context.params.label, context.paths
    domains = context.taxonomy.domain_ids
    annotations = read_annotations(paths.annotations_dir, {*domains, params.out_of_scope_label})
    table = context.input_table(paths.families, "families", "families")
    sources = load_sources(context.sources_folder, domains,
                           tuple(context.vocabulary.by_name()))
    labeled, mapped, annotation, votes = assign_labels(table, sources, annotations,
                                                       params)
    ledger = StageLedger(STAGE)
    out_of_scope = labeled["domain"] == params.out_of_scope_label
    ledger.drop(labeled[out_of_scope], "filtered", "out_of_scope", field="domain",
                detail="annotators: no domain applies")
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
    report["rubric"] = rubric_report(annotations, valid, context.vocabulary)
    with StagedWrites() as out:
        out.parquet(to_arrow(valid, context.vocabulary.arrow_type(), labelled=True),
                    paths.labeled)
        ledger.write(out, paths, summary)
        out.json(report, paths.report("labels"))
        out.json(signals_report(table, detectors), paths.report("signals"))
    return StageResult(STAGE, summary, report, [
        "domains: " + ", ".join(f"{d} {sum(v.values())}" for d, v in report["by_domain"].items()),
        f"disagreements between annotators and category maps: {len(report['disagreements'])}"])


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
                             "annotated_n": {**zero, **found.get("annotated_n", {})}})
        done.append(enriched)
    return done


def rubric_report(annotations: pd.DataFrame, kept: pd.DataFrame,
                  vocabulary: Vocabulary) -> dict[str, Any]:
    """The annotators' rubric: how many kept responses it reached, and the agreement per
    judgment (ordinal for ratings, nominal for yes/no)."""
    names = [j.name for j in vocabulary.judgments
             if (annotations["question"] == j.name).any()]
    kinds = {j.name: j.type for j in vocabulary.judgments}
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


def assign_labels(table: pd.DataFrame, sources: list[Source], annotations: pd.DataFrame,
                  params: LabelParams) -> tuple[pd.DataFrame, pd.Series, pd.Series,
                                                pd.DataFrame]:
    """Each item's domain (annotation majority, else category map) and its provenance;
    also the mapped and annotated domains apart, and the vote table, for the report."""
    by_name = {s.name: s for s in sources}
    unknown = sorted(set(table["source"]) - set(by_name))
    if unknown:
        raise CurationError(f"rows come from source '{unknown[0]}', which has no source file",
                            file="sources", field="source")
    mapped = pd.Series([by_name[s].domain_of(c) for s, c in
                        zip(table["source"], table["source_category"].astype(object).where(
                            table["source_category"].notna(), None), strict=True)],
                       index=table.index, dtype="object")
    votes = aggregate(annotations, params.min_submitted).set_index("id")
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
    return labeled, mapped, annotation, votes


def label_report(labeled: pd.DataFrame, mapped: pd.Series, annotation: pd.Series,
                 votes: pd.DataFrame, kept: pd.DataFrame,
                 domains: tuple[str, ...]) -> dict[str, Any]:
    """Counts by domain and provenance, and where annotators and category maps disagree."""
    disagree = annotation.notna() & mapped.notna() & (annotation != mapped)
    by_domain = {d: {"annotation": 0, "source_map": 0} for d in domains}
    for (domain, source), n in kept.groupby(["domain", "label_source"]).size().items():
        by_domain.setdefault(domain, {"annotation": 0, "source_map": 0})[source] = int(n)
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
