"""The dataset card and chart of a release: a YAML header that `datasets` reads (built with
huggingface_hub's card data), and the documentation body."""

from __future__ import annotations

import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
from huggingface_hub import DatasetCard, DatasetCardData
from jinja2 import Environment, PackageLoader, StrictUndefined

from curation import __version__
from curation.core.config import ReleaseParams
from curation.core.judgments import Vocabulary
from curation.core.paths import SPLITS
from curation.core.taxonomy import Taxonomy
from curation.publishing.changelog import TAG_PREFIX, diff_markdown

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)

CHART = "domain_distribution.png"
# The card body's layout. trim_blocks: a line holding only a block tag outputs nothing, so the
# template reads like the Markdown it renders; StrictUndefined: a missing value is an error,
# not an empty string in a published card.
_TEMPLATES = Environment(loader=PackageLoader("curation.publishing", "templates"),
                         keep_trailing_newline=True, trim_blocks=True, autoescape=False,
                         undefined=StrictUndefined)


@dataclass
class ReleaseInputs:
    """Everything a release is made from: the reports and the default configuration read
    before anything is written; every configuration's files copied as the release is
    built (a bad one still stops it in one line, and the staging folder goes)."""

    default: dict[str, pd.DataFrame]             # split -> rows of the default config
    configs: dict[str, dict[str, Path]]          # config -> split -> its split file
    taxonomy: Taxonomy
    schema_dir: Path
    sources: dict[str, Any]                      # reports/sources.json
    dedup: dict[str, Any]                        # reports/dedup.json
    families: dict[str, Any]                     # reports/families.json
    labels: dict[str, Any]                       # reports/labels.json
    signals: dict[str, Any]                      # reports/signals.json
    suggest: dict[str, Any]                      # reports/suggest.json
    split_report: dict[str, Any]                 # reports/splits.json
    redact: dict[str, Any]                       # reports/redact.json
    params: dict[str, Any]                       # the whole params.yaml, as written
    vocabulary: Vocabulary                       # schemas/judgments.yaml


def domain_chart(inputs: ReleaseInputs) -> bytes:
    """A stacked bar chart of the default configuration: items per domain and split."""
    domains = list(inputs.taxonomy.domain_ids)
    default = inputs.default
    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    bottom = [0] * len(domains)
    for name, color in zip(SPLITS, ("#4c72b0", "#dd8452", "#55a868"), strict=True):
        counts = default[name]["domain"].value_counts()
        values = [int(counts.get(d, 0)) for d in domains]
        ax.bar(domains, values, bottom=bottom, label=name, color=color)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_ylabel("items")
    ax.set_title("Items per risk domain (default configuration)")
    ax.legend()
    ax.tick_params(axis="x", labelrotation=15)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", metadata={"Software": None})
    plt.close(fig)
    return buffer.getvalue()


def _size_category(n: int) -> str:
    for limit, name in ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"),
                        (1_000_000, "100K<n<1M")):
        if n < limit:
            return name
    return "1M<n<10M"


def dataset_card(inputs: ReleaseInputs, params: ReleaseParams, rows: dict[str, dict[str, int]],
                 change: tuple[str, dict[str, Any]] | None) -> DatasetCard:
    """The dataset card: a YAML header `datasets` reads, and the documentation body."""
    default = pd.concat(inputs.default.values(), ignore_index=True)
    used_sources = sorted(set(default["source"]))
    licenses = sorted({inputs.sources[s]["license"].lower() for s in used_sources})
    languages = sorted(set(default["language"]) - {"und"}) or ["en"]
    annotated = (default["label_source"] == "annotation").any()
    gate = ({"extra_gated_prompt": params.gated.prompt,
             "extra_gated_fields": dict(params.gated.fields)} if params.gated.enabled else {})
    data = DatasetCardData(
        pretty_name=params.pretty_name,
        license=licenses if len(licenses) > 1 else licenses[0],
        language=languages,
        language_creators=["found"],
        multilinguality=["monolingual" if len(languages) == 1 else "multilingual"],
        task_categories=["text-classification", "text-generation"],
        task_ids=["multi-class-classification"],
        size_categories=[_size_category(len(default))],
        annotations_creators=(["expert-generated"] if annotated else [])
        + (["machine-generated"] if (default["label_source"] == "model").any() else [])
        + (["found"] if (default["label_source"] == "source_map").any() else []),
        source_datasets=["extended"] + sorted(
            f"extended|{inputs.sources[s]['hub']['path']}" for s in used_sources
            if "hub" in inputs.sources[s]),
        tags=["safety", "refusal", "red-teaming", "mental-health", "risk-domains"],
        configs=[{"config_name": config, "data_files": [
            {"split": name, "path": f"data/{config}/{name}.parquet"} for name in SPLITS]}
            for config in inputs.configs],
        **gate,
    )
    body = card_body(inputs, params, rows, default, used_sources, change)
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n{body}")


def card_body(inputs: ReleaseInputs, params: ReleaseParams, rows: dict[str, dict[str, int]],
              default: pd.DataFrame, used_sources: list[str],
              change: tuple[str, dict[str, Any]] | None) -> str:
    """The card's Markdown body: the values are gathered here, and laid out by the template
    `templates/card.md.j2`, where the text can be read and edited as it will appear."""
    domains = list(inputs.taxonomy.domain_ids)
    labels, splits = inputs.labels, inputs.split_report
    return _TEMPLATES.get_template("card.md.j2").render(
        params=params, toolkit_version=__version__, total=len(default), domains=domains,
        with_responses=int(default["responses"].map(len).gt(0).sum()),
        responses=int(default["responses"].map(len).sum()),
        benign=int((default["expected_behavior"] == "comply").sum()),
        item_rows=item_rows(inputs.default, domains),
        judgment_rows=judgment_rows(default, inputs.vocabulary),
        splits=list(SPLITS), chart=CHART,
        config_rows=[[config, *(counts[name] for name in SPLITS)]
                     for config, counts in rows.items()],
        domain_rows=[[config, name, *(splits["configs"][config]["by_domain"][name].get(d, 0)
                                      for d in domains)]
                     for config in rows for name in SPLITS],
        tag=f"{TAG_PREFIX}{params.version}",
        changes=diff_markdown(change[0], params.version, change[1]) if change else None,
        taxonomy_rows=[[d["id"], d["title"], d["definition"],
                        "; ".join(f["name"] for f in d.get("intervention_frameworks", []))]
                       for d in inputs.taxonomy.domains],
        referral_rows=[[d["title"], r["name"], r["contact"], r["region"]]
                       for d in inputs.taxonomy.domains
                       for r in d.get("referral_resources", [])],
        example=example_instance(inputs.default["train"]),
        dataset_citation=dataset_citation(params, __version__),
        source_rows=[[s, inputs.sources[s]["description"], inputs.sources[s]["license"],
                      int((default["source"] == s).sum()), _pin_text(inputs.sources[s])]
                     for s in used_sources],
        dedup=inputs.dedup,
        annotated=labels["by_label_source"].get("annotation", 0),
        source_mapped=labels["by_label_source"].get("source_map", 0),
        min_submitted=inputs.params["label"]["min_submitted"],
        unlabelled=labels["items"] - labels["labeled"],
        agreement="n/a" if labels["mean_agreement"] is None else labels["mean_agreement"],
        disagreements=len(labels["disagreements"]),
        model=labels["model"], suggest=inputs.suggest,
        model_labelled=labels["by_label_source"].get("model", 0),
        suggest_figures=_suggest_figures(inputs.suggest),
        model_agreement={who: _agreement_text(labels["model"][key]) for who, key in (
            ("annotators", "agreement_with_annotators"),
            ("maps", "agreement_with_category_maps"))},
        families=inputs.families,
        signals=inputs.signals["refusal_vs_human"],
        rubric_answered=labels["rubric"]["responses_annotated"],
        rubric_rows=[[f["question"], f["level"], f["answers"], f["records"],
                      "n/a" if f["krippendorff_alpha"] is None else f["krippendorff_alpha"],
                      "; ".join(f"{pair} {k}" for pair, k in f["cohen_kappa"].items()) or "n/a"]
                     for f in labels["rubric"]["agreement"]],
        empathy_rows=empathy_rows(default, domains),
        pii=inputs.redact,
        pii_rows=[[kind, n["found"], n["items"], n["responses"]]
                  for kind, n in inputs.redact["by_type"].items()],
        split_neighbours=splits["neighbours_per_item"],
        contamination_rows=[[name, _pin_text(inputs.sources[name]) if name in inputs.sources
                             else "", figures["reference_items"], figures["removed"],
                             figures["highest_remaining_cosine"],
                             figures["highest_remaining_jaccard"]]
                            for name, figures in inputs.families["contamination"].items()],
        leakage_rows=[[config, figures["max_cross_split_cosine"],
                       figures["max_cross_split_jaccard"],
                       max(map(int, figures["family_sizes"]), default=0),
                       ", ".join(f"{size}: {n}" for size, n in figures["family_sizes"].items())]
                      for config, figures in splits["configs"].items()],
        citations=list(dict.fromkeys(inputs.sources[s]["citation"].strip()
                                     for s in used_sources if inputs.sources[s]["citation"])),
    )


def example_instance(train: pd.DataFrame, limit: int = 300) -> str:
    """One training item as JSON (the first by id with a response, texts cut at `limit`):
    what a row looks like once loaded."""
    with_response = train[train["responses"].map(len) > 0]
    row = (with_response if len(with_response) else train).sort_values("id").iloc[0]

    def cut(value: Any) -> Any:
        if isinstance(value, str):
            return value if len(value) <= limit else value[:limit] + "…"
        if isinstance(value, dict):
            return {k: cut(v) for k, v in value.items()}
        if isinstance(value, list):
            return [cut(v) for v in value[:2]]
        if isinstance(value, float) and value != value:  # NaN: a null
            return None
        return value.item() if hasattr(value, "item") else value

    return json.dumps(cut(row.to_dict()), ensure_ascii=False, indent=2, default=str)


def dataset_citation(params: ReleaseParams, toolkit_version: str) -> str:
    """A BibTeX entry for the dataset itself (no year: the same inputs give the same card)."""
    key = re.sub(r"[^a-z0-9]+", "_", (params.hub_repo or params.pretty_name).lower()).strip("_")
    where = (f"\n  howpublished = {{\\url{{https://huggingface.co/datasets/{params.hub_repo}}}}},"
             if params.hub_repo else "")
    return (f"@misc{{{key}_{params.version.replace('.', '_')},\n"
            f"  title = {{{{{params.pretty_name}}}}},\n"
            f"  note = {{Version {params.version}, built with refusal-curation "
            f"{toolkit_version}}},{where}\n}}")


def _suggest_figures(report: dict[str, Any]) -> dict[str, Any]:
    if not report.get("trained"):
        return {"out_of_fold": "n/a", "held_out": "n/a", "ece": "n/a"}
    return {"out_of_fold": report["out_of_fold"]["macro_f1"],
            "held_out": report["held_out_sources"]["macro_f1"],
            "ece": report["out_of_fold"]["expected_calibration_error"]}


def _agreement_text(figures: dict[str, Any]) -> str:
    if not figures["items"]:
        return "no items"
    return f"{figures['agree']} of {figures['items']} ({figures['rate']:.0%})"


def _pin_text(pin: dict[str, Any]) -> str:
    """How a source is pinned, for the Sources table: package and hash, Hub revision, or
    the number of local files."""
    if "artifact" in pin:
        artifact = pin["artifact"]
        return f"{artifact['package']}=={artifact['version']} (sha256 {artifact['sha256'][:12]}…)"
    if "hub" in pin:
        return f"{pin['hub']['path']}@{pin['hub'].get('revision', 'unpinned')}"
    return f"{len(pin['files'])} local file(s)"


def empathy_rows(items: pd.DataFrame, domains: list[str]) -> list[list[Any]]:
    """Per domain, the share of responses the rules call refusals and referrals, for
    harmful items and for benign look-alikes: PsychoSafe's "schematic empathy" is a high
    referral rate where no help was needed."""
    def rates(frame: pd.DataFrame) -> list[Any]:
        signals = [r["signals"] for rs in frame["responses"] for r in rs]
        if not signals:
            return [0, "-", "-"]
        return [len(signals), f"{sum(s['refusal'] for s in signals) / len(signals):.0%}",
                f"{sum(s['referral'] for s in signals) / len(signals):.0%}"]

    return [[domain, *rates(items[(items["domain"] == domain)
                                  & (items["expected_behavior"] == "refuse")]),
             *rates(items[(items["domain"] == domain)
                          & (items["expected_behavior"] == "comply")])]
            for domain in domains]


def item_rows(splits: dict[str, pd.DataFrame], domains: list[str]) -> list[list[Any]]:
    """Per domain and split: harmful and benign items, items with responses, responses."""
    rows = []
    for domain in domains:
        for name, frame in splits.items():
            part = frame[frame["domain"] == domain]
            counts = part["responses"].map(len)
            rows.append([domain, name, int((part["expected_behavior"] == "refuse").sum()),
                         int((part["expected_behavior"] == "comply").sum()),
                         int(counts.gt(0).sum()), int(counts.sum()),
                         f"{counts.sum() / max(1, counts.gt(0).sum()):.2f}"])
    return rows


def judgment_rows(items: pd.DataFrame, vocabulary: Vocabulary) -> list[list[Any]]:
    """Per judgment: how many responses carry one (from their source), and what it means."""
    responses = [r for rs in items["responses"] for r in rs]
    return [[j.name, sum((r.get("judgments") or {}).get(j.name) is not None for r in responses),
             len(responses), j.description] for j in vocabulary.judgments]
