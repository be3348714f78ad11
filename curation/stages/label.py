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
from curation.annotation.labels import assign_labels, read_annotations, vote_table
from curation.core.errors import CurationError
from curation.core.items import response_id, responses_of, to_arrow
from curation.core.judgments import Vocabulary
from curation.core.ledger import StageLedger
from curation.core.progress import bar
from curation.core.schemas import load_schema, validate_rows
from curation.core.signals import Detectors, load_detectors
from curation.core.tableio import (
    StagedWrites,
    check_unique,
    open_input,
    read_batches,
    read_input,
)
from curation.sources.spec import load_sources
from curation.stages.base import Context, StageResult

STAGE = "label"
_STREAM_ROWS = 10_000  # items labelled and written at a time
NO_DETAIL = {"grounding_strategies": [], "refusal_turn": None, "refusal_turn_n": 0,
             "refusal_phase": None, "refusal_phase_n": 0}
OUT_OF_SCOPE_BY = {"annotation": "annotators: no domain applies",
                   "source_map": "category map: out of scope",
                   "model": "suggestion model: out of scope, above label.accept_model_above"}


def run(context: Context) -> StageResult:
    """Give each item its domain and write the labeled table, dropped rows and report.

    Items stream `_STREAM_ROWS` at a time; the annotations, their vote table and the
    suggestions (a few columns per item) are read whole."""
    params, paths, vocabulary = context.params.label, context.paths, context.vocabulary
    annotations = read_annotations(paths.annotations_dir, set(context.category_labels))
    votes = vote_table(annotations, params.min_submitted)
    columns = load_schema("families").columns
    families = open_input(paths.families, "families", columns)
    total, like = families.metadata.num_rows, families.schema_arrow
    check_unique(paths.families, "families", "id")
    items = read_batches(paths.families, "families", columns, _STREAM_ROWS)
    sources = load_sources(context.sources_folder, context.category_labels,
                           tuple(vocabulary.by_name()))
    suggestions = read_input(paths.suggestions, "suggest",
                             load_schema("suggestions").columns).set_index("id")
    detectors = load_detectors(paths.schemas_dir / "signals.yaml", context.taxonomy)
    judged = rubric(annotations, vocabulary)
    schema = load_schema("labeled")
    ledger, tally, signals = StageLedger(STAGE), LabelTally(context.taxonomy.domain_ids), (
        SignalTally())
    matched = np.zeros(len(votes), dtype=bool)  # votes whose record is an item
    with StagedWrites() as out, bar(total, "label", " items") as shown:
        writer = None
        for table in items:
            matched |= votes.index.isin(table["id"])
            missing = ~table["id"].isin(suggestions.index)
            if len(suggestions) and missing.any():
                raise CurationError(f"no suggestion for item {table.loc[missing, 'id'].iloc[0]}"
                                    " of data/families.parquet; run `curate suggest` again",
                                    file=str(paths.suggestions), field="id")
            labeled, mapped, annotation = assign_labels(table, sources, votes)
            labeled = with_model_labels(labeled, suggestions, params.accept_model_above)
            out_of_scope = labeled["domain"] == params.out_of_scope_label
            ledger.drop(labeled[out_of_scope], "filtered", "out_of_scope", field="domain",
                        detail=labeled.loc[out_of_scope, "label_source"].map(OUT_OF_SCOPE_BY)
                        .reset_index(drop=True))
            unlabeled = labeled["domain"].isna()
            pending = labeled["n_annotations"].to_numpy() > 0
            ledger.drop(labeled[unlabeled], "filtered", "unlabeled", field="domain",
                        detail=pd.Series(np.where(pending[unlabeled],
                                                  "annotations pending or tied",
                                                  "no annotation and no mapped category")))
            kept = labeled[~(out_of_scope | unlabeled)].reset_index(drop=True)
            kept["responses"] = with_signals_and_rubric(kept, detectors, judged, vocabulary)
            kept = kept.astype({"domain": "str", "label_source": "str"})
            valid, failures = validate_rows(kept, schema)
            if not failures.empty:
                ledger.drop(kept.iloc[failures["index"]], "quarantined", failures["check"],
                            field=failures["field"], detail=failures["detail"])
            tally.add(table, labeled, mapped, annotation, valid, out_of_scope | unlabeled,
                      suggestions, params.accept_model_above)
            signals.add(table, detectors)
            arrow = to_arrow(valid, vocabulary.arrow_type(), labelled=True, like=like)
            writer = writer or out.row_groups(paths.labeled, arrow.schema, _STREAM_ROWS)
            writer.write(arrow)
            shown.update(len(table))
        ledger.count_responses(tally.responses_in, tally.responses_kept,
                               item_filtered=tally.responses_filtered,
                               item_quarantined=tally.responses_in - tally.responses_kept
                               - tally.responses_filtered)
        summary = ledger.summary(tally.rows_in, tally.rows_kept)
        report = tally.report(votes, params.accept_model_above)
        report["unmatched_annotated_records"] = sorted(votes.index[~matched])
        report["rubric"] = rubric_report(annotations, tally.responses_annotated, vocabulary)
        report["agreement"] = ([agreement(annotations, DOMAIN_QUESTION, ordinal=False)]
                               if (annotations["question"] == DOMAIN_QUESTION).any() else []
                               ) + report["rubric"]["agreement"]
        found = signals.report()
        ledger.write(out, paths, summary, label_figures(report, found))
        out.csv(["question", "krippendorff_alpha"],
                [[f["question"], f["krippendorff_alpha"]] for f in report["agreement"]],
                paths.plot("agreement"))
        out.json(report, paths.report("labels"))
        out.json(found, paths.report("signals"))
    return StageResult(STAGE, summary, report, [
        "domains: " + ", ".join(f"{d} {sum(v.values())}" for d, v in report["by_domain"].items()),
        f"disagreements between annotators and category maps: {len(report['disagreements'])}",
        *_unmatched_warning(report["unmatched_annotated_records"])])


def _unmatched_warning(records: list[str]) -> list[str]:
    """A line naming annotated records that no item has (another build's ids, a typo)."""
    if not records:
        return []
    shown = ", ".join(records[:3]) + (", ..." if len(records) > 3 else "")
    return [f"warning: domain answers for {len(records)} records that are no item of this "
            f"build ({shown}); they were not used"]


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


def rubric_report(annotations: pd.DataFrame, reached: int, vocabulary: Vocabulary
                  ) -> dict[str, Any]:
    """The annotators' rubric: how many kept responses it `reached`, and the agreement per
    judgment and on the first refusing turn and its phase (ordinal for ratings and turns,
    nominal for yes/no and phases)."""
    kinds = {j.name: j.type for j in vocabulary.judgments}
    kinds.update({TURN_QUESTION: "int", PHASE_QUESTION: "bool"})  # ordinal; nominal
    names = [name for name in kinds if (annotations["question"] == name).any()]
    return {"responses_annotated": reached,
            "agreement": [agreement(annotations, name, ordinal=kinds[name] != "bool")
                          for name in names]}


class SignalTally:
    """How the refusal rule agrees with the human refusal labels sources ship
    (`judgments.is_refusal`), over every response before labelling, and how often each
    rule fires; counted a batch of items at a time."""

    def __init__(self) -> None:
        self.counts: Counter[str] = Counter()
        self.sources: set[str] = set()

    def add(self, table: pd.DataFrame, detectors: Detectors) -> None:
        for response in (r for rs in table["responses"] for r in rs):
            rule = detectors.refusal(response["text"])
            human = (response.get("judgments") or {}).get("is_refusal")
            self.counts.update(responses=1, refusal_detected=int(rule),
                               referral_detected=int(detectors.referral(response["text"])))
            if human is not None:
                self.sources.add(response["source"])
                self.counts.update(judged=1, true_positive=int(bool(rule and human)),
                                   false_positive=int(bool(rule and not human)),
                                   false_negative=int(bool(human and not rule)))

    def report(self) -> dict[str, Any]:
        tp, fp, fn = (self.counts[k] for k in ("true_positive", "false_positive",
                                               "false_negative"))
        return {
            "responses": self.counts["responses"],
            "refusal_detected": self.counts["refusal_detected"],
            "referral_detected": self.counts["referral_detected"],
            "refusal_vs_human": {
                "responses": self.counts["judged"], "sources": sorted(self.sources),
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


class LabelTally:
    """The label report's figures, counted a batch of items at a time: items and
    responses in and kept, counts by domain and provenance, where annotators and category
    maps disagree, and what the suggestion model labelled and how it agrees with people
    (out-of-fold suggestions at the acceptance threshold, or all without one)."""

    def __init__(self, domains: tuple[str, ...]) -> None:
        self.rows_in: Counter[str] = Counter()
        self.rows_kept: Counter[str] = Counter()
        self.responses_in = self.responses_kept = self.responses_filtered = 0
        self.responses_annotated = 0
        self.by_domain = {d: {"annotation": 0, "source_map": 0, "model": 0} for d in domains}
        self.by_label_source: Counter[str] = Counter()
        self.agreements: list[np.ndarray] = []
        self.disagreements: list[dict[str, Any]] = []
        self.by_model: Counter[str] = Counter()
        self.model_agrees = {"annotators": Counter(), "category_maps": Counter()}

    def add(self, table: pd.DataFrame, labeled: pd.DataFrame, mapped: pd.Series,
            annotation: pd.Series, kept: pd.DataFrame, filtered: pd.Series,
            suggestions: pd.DataFrame, threshold: float | None) -> None:
        """A batch: its items, labelled, and those kept (valid)."""
        self.rows_in.update(table["source"])
        self.rows_kept.update(kept["source"])
        self.responses_in += responses_of(table)
        self.responses_kept += responses_of(kept)
        self.responses_filtered += responses_of(labeled[filtered])
        self.responses_annotated += sum(any(n for n in r["annotated_n"].values())
                                        for rs in kept["responses"] for r in rs)
        for (domain, source), n in kept.groupby(["domain", "label_source"]).size().items():
            self.by_domain[domain][source] += int(n)
        self.by_label_source.update(kept["label_source"].dropna())
        self.agreements.append(kept["agreement"].to_numpy(dtype="float64"))
        disagree = annotation.notna() & mapped.notna() & (annotation != mapped)
        self.disagreements += [
            {"id": row.id, "annotation": annotation[i], "source_map": mapped[i],
             "source": row.source, "source_category": row.source_category}
            for i, row in zip(labeled.index[disagree], labeled[disagree].itertuples(),
                              strict=True)]
        self.by_model.update(labeled.loc[labeled["label_source"] == "model", "domain"])
        found = suggestions.reindex(labeled["id"])
        honest = found["out_of_fold"].fillna(False).to_numpy(dtype=bool)
        if threshold is not None:
            honest = honest & (found["score"].to_numpy(dtype="float64") >= threshold)
        suggested = pd.Series(found["suggestion"].to_numpy(dtype=object), index=labeled.index)
        for people, counts in ((annotation, self.model_agrees["annotators"]),
                               (mapped, self.model_agrees["category_maps"])):
            both = honest & people.notna().to_numpy()
            counts.update(items=int(both.sum()),
                          agree=int((suggested[both] == people[both]).sum()))

    def report(self, votes: pd.DataFrame, threshold: float | None) -> dict[str, Any]:
        """The report (`model` included; the caller adds `rubric` and `agreement`)."""
        agreements = pd.Series(np.concatenate(self.agreements) if self.agreements
                               else np.empty(0))

        def agreement_with(counts: Counter[str]) -> dict[str, Any]:
            items, agree = counts["items"], counts["agree"]
            return {"items": items, "agree": agree,
                    "rate": round(agree / items, 4) if items else None}

        return {
            "items": self.rows_in.total(),
            "labeled": self.rows_kept.total(),
            "by_domain": self.by_domain,
            "by_label_source": dict(sorted(self.by_label_source.items())),
            "annotated_items": int(len(votes)),
            "awaiting_adjudication": sorted(votes.index[votes["adjudicate"] == "tie"].tolist()),
            "mean_agreement": (round(float(agreements.mean()), 4)
                               if agreements.notna().any() else None),
            "disagreements": self.disagreements,
            "model": {"accept_above": threshold, "accepted": self.by_model.total(),
                      "by_label": dict(sorted(self.by_model.items())),
                      "agreement_with_annotators": agreement_with(
                          self.model_agrees["annotators"]),
                      "agreement_with_category_maps": agreement_with(
                          self.model_agrees["category_maps"])},
        }
