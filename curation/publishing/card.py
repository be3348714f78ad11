"""The dataset card and chart of a release: a YAML header that `datasets` reads (built with
huggingface_hub's card data), and the documentation body."""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
from huggingface_hub import DatasetCard, DatasetCardData

from curation import __version__
from curation.core.config import ReleaseParams
from curation.core.paths import SPLITS
from curation.core.taxonomy import Taxonomy
from curation.publishing.changelog import TAG_PREFIX, diff_markdown

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (after choosing the headless backend)

CHART = "domain_distribution.png"


@dataclass
class ReleaseInputs:
    """Everything a release is made from, read before anything is written."""

    splits: dict[str, dict[str, pd.DataFrame]]   # config -> split -> rows
    taxonomy: Taxonomy
    schema_dir: Path
    sources: dict[str, Any]                      # reports/sources.json
    dedup: dict[str, Any]                        # reports/dedup.json
    labels: dict[str, Any]                       # reports/labels.json
    split_report: dict[str, Any]                 # reports/splits.json
    params: dict[str, Any]                       # the whole params.yaml, as written


def domain_chart(inputs: ReleaseInputs) -> bytes:
    """A stacked bar chart of the default configuration: items per domain and split."""
    domains = list(inputs.taxonomy.domain_ids)
    default = inputs.splits["default"]
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
    default = pd.concat(inputs.splits["default"].values(), ignore_index=True)
    used_sources = sorted(set(default["source"]))
    licenses = sorted({inputs.sources[s]["license"].lower() for s in used_sources})
    languages = sorted(set(default["language"]) - {"und"}) or ["en"]
    annotated = (default["label_source"] == "annotation").any()
    data = DatasetCardData(
        pretty_name=params.pretty_name,
        license=licenses if len(licenses) > 1 else licenses[0],
        language=languages,
        task_categories=["text-classification", "text-generation"],
        size_categories=[_size_category(len(default))],
        annotations_creators=(["expert-generated", "found"] if annotated else ["found"]),
        source_datasets=[f"{s}: {inputs.sources[s]['homepage']}" for s in used_sources],
        tags=["safety", "refusal", "red-teaming", "mental-health", "risk-domains"],
        configs=[{"config_name": config, "data_files": [
            {"split": name, "path": f"data/{config}/{name}.parquet"} for name in SPLITS]}
            for config in inputs.splits],
    )
    body = card_body(inputs, params, rows, default, used_sources, change)
    return DatasetCard(f"---\n{data.to_yaml()}\n---\n{body}")


def _table(header: list[str], lines: list[list[Any]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(str(c).replace("|", "\\|").replace("\n", " ") for c in line)
            + " |" for line in lines]
    return "\n".join(out)


def card_body(inputs: ReleaseInputs, params: ReleaseParams, rows: dict[str, dict[str, int]],
              default: pd.DataFrame, used_sources: list[str],
              change: tuple[str, dict[str, Any]] | None) -> str:
    domains = list(inputs.taxonomy.domain_ids)
    total = len(default)
    dedup, labels, splits = inputs.dedup, inputs.labels, inputs.split_report
    sections = [
        f"# {params.pretty_name}",
        "> **Content warning.** This dataset contains prompts about suicide and self-harm, "
        "substance use, violence, weapons and sexual crimes, and model responses to them. "
        "Read and use it with care.",
        "## Summary",
        f"{params.description}\n\nVersion {params.version}: {total} prompts from "
        f"{len(used_sources)} sources, each labelled with one of {len(domains)} risk domains, "
        f"{int(default['response'].notna().sum())} of them with a model response. Built by "
        f"refusal-curation {__version__}.",
        "## Configurations",
        "`default` is an in-domain split, stratified by domain and source. Each "
        "`heldout-<domain>` configuration tests on one domain only, after training and "
        "validating on the others: it measures how well refusal behaviour generalises to a "
        "risk domain a model was not tuned on.",
        _table(["configuration", *SPLITS],
               [[config, *(counts[name] for name in SPLITS)] for config, counts in rows.items()]),
        "### Items per configuration, split and domain",
        _table(["configuration", "split", *domains],
               [[config, name, *(splits["configs"][config]["by_domain"][name].get(d, 0)
                                 for d in domains)]
                for config in rows for name in SPLITS]),
        f"![Items per risk domain]({CHART})",
        "## How to load",
        how_to_load(params, domains[0]),
        "## Changes",
        (diff_markdown(change[0], params.version, change[1]) if change
         else "First release."),
        "## Risk domains",
        _table(["id", "title", "definition", "intervention frameworks", "referral resources"],
               [[d["id"], d["title"], d["definition"],
                 "; ".join(f["name"] for f in d.get("intervention_frameworks", [])),
                 "; ".join(f"{r['name']} ({r['contact']}, {r['region']})"
                           for r in d.get("referral_resources", []))]
                for d in inputs.taxonomy.domains]),
        "## Sources",
        _table(["source", "description", "license", "items", "pin"],
               [[s, inputs.sources[s]["description"], inputs.sources[s]["license"],
                 int((default["source"] == s).sum()), _pin_text(inputs.sources[s])]
                for s in used_sources]),
        "## How it was built",
        f"- **Deduplication** (on the {dedup['params']['on']}): {dedup['rows_in']} items in, "
        f"{dedup['exact_duplicates']} exact and {dedup['near_duplicates']} near duplicates "
        f"removed (MinHash LSH, word {dedup['params']['ngram']}-grams, Jaccard >= "
        f"{dedup['params']['threshold']}, every candidate checked exactly), in "
        f"{dedup['clusters']} clusters; one representative kept per cluster.",
        f"- **Labels**: {labels['by_label_source'].get('annotation', 0)} items labelled by "
        f"annotators (majority of at least {inputs.params['label']['min_submitted']} "
        f"answers), {labels['by_label_source'].get('source_map', 0)} by their source's "
        f"category map; {labels['items'] - labels['labeled']} deduplicated items had no "
        "domain and are not released. Mean annotator agreement: "
        f"{labels['mean_agreement'] if labels['mean_agreement'] is not None else 'n/a'}; "
        f"disagreements between annotators and category maps: {len(labels['disagreements'])}.",
        f"- **Leakage**: prompts with Jaccard similarity >= {splits['leakage_threshold']} stay "
        "in one split; the highest similarity found between two items in different splits of "
        f"`default` is {splits['configs']['default']['max_cross_split_similarity']}.",
        "## Data fields",
        _table(["field", "meaning"], [[name, meaning] for name, meaning in FIELDS]),
        "## Limitations",
        "- Most labels come from the sources' own categories mapped to the five domains, not "
        "from annotators; the mapping is in each source file and its errors carry over.\n"
        "- Domains are unevenly represented; small held-out test sets give wide "
        "confidence intervals.\n"
        "- Prompts are mostly English; items too short for reliable language detection "
        "are marked `und`.\n"
        "- Responses come from whichever models the sources used; they are examples, not "
        "references of good refusals.",
        "## Citation",
        "Cite the sources this release is built from:\n\n" + "\n\n".join(
            f"```bibtex\n{inputs.sources[s]['citation']}\n```" for s in used_sources),
    ]
    return "\n\n".join(sections) + "\n"


def how_to_load(params: ReleaseParams, domain: str) -> str:
    """Loading by local path, and by Hub repository at this version's tag."""
    lines = ["```python", "from datasets import load_dataset", "",
             "# from a local copy of the release folder",
             f'default = load_dataset("releases/{params.version}")',
             f'heldout = load_dataset("releases/{params.version}", "heldout-{domain}")']
    if params.hub_repo:
        lines += ["", "# from the Hugging Face Hub, pinned to this version",
                  f'heldout = load_dataset("{params.hub_repo}", "heldout-{domain}", '
                  f'revision="{TAG_PREFIX}{params.version}")']
    return "\n".join([*lines, "```"])


def _pin_text(pin: dict[str, Any]) -> str:
    if "artifact" in pin:
        artifact = pin["artifact"]
        return f"{artifact['package']}=={artifact['version']} (sha256 {artifact['sha256'][:12]}…)"
    if "hub" in pin:
        return f"{pin['hub']['path']}@{pin['hub'].get('revision', 'unpinned')}"
    return f"{len(pin['files'])} local file(s)"


FIELDS = [
    ("id", "stable id: a hash of the source and the cleaned prompt and response"),
    ("prompt", "the prompt, cleaned (NFC, control characters removed, spaces folded)"),
    ("response", "a model's response from the source, if it has one"),
    ("source", "the source it was pulled from (see Sources)"),
    ("source_record_id", "where in the source: its record id, or file and row"),
    ("source_category", "the source's own category"),
    ("source_license", "the source's license"),
    ("language", "language of prompt and response by langdetect; `und` if too short"),
    ("language_prob", "langdetect's probability for that language"),
    ("dup_cluster_id", "id of the duplicate cluster this item represents (its own id)"),
    ("dup_cluster_size", "how many near or exact duplicates the cluster had"),
    ("domain", "the risk domain"),
    ("label_source", "`annotation` (annotators' majority) or `source_map` (category map)"),
    ("n_annotations", "submitted annotator answers for the domain"),
    ("agreement", "share of those answers that chose the majority label"),
    ("split", "the split this item is in, in this configuration"),
]
