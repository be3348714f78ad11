"""Stage `normalize`: clean texts, filter by length, detect the language, filter by
language, and validate against the normalized schema.

Steps, each with its own count in the ledger: clean -> length filter -> detect language ->
language filter -> validate.
"""

from __future__ import annotations

from collections import Counter
from functools import partial
from pathlib import Path

import pandas as pd
import pyarrow as pa

from curation.core.config import NormalizeParams
from curation.core.engine import Engine
from curation.core.errors import CurationError
from curation.core.items import responses_of, to_arrow
from curation.core.language import UNDETERMINED, LanguageId, detect_table
from curation.core.ledger import StageLedger
from curation.core.progress import bar
from curation.core.schemas import load_schema, validate_rows
from curation.core.tableio import StagedWrites, read_input
from curation.core.text import clean_text
from curation.stages.base import Context, StageResult

STAGE = "normalize"


def read_raw(raw_dir: Path) -> pd.DataFrame:
    """All pulled sources, in source-name order."""
    paths = sorted(raw_dir.glob("*.parquet"))
    if not paths:
        raise CurationError("no pulled sources; run `curate pull` first", file=str(raw_dir))
    columns = load_schema("raw").columns
    return pd.concat([read_input(p, "pull", columns) for p in paths], ignore_index=True)


def run(context: Context) -> StageResult:
    """Run the steps over the pulled rows; write the normalized table and the ledger."""
    params, paths = context.params.normalize, context.paths
    raw = read_raw(paths.raw_dir)
    ledger = StageLedger(STAGE)
    cleaned = clean(raw)
    table = filter_lengths(cleaned, params, ledger)
    engine = Engine(context.params.engine.kind, context.params.engine.address, params.num_proc)
    table, decided_by = detect_languages(table, params, engine)
    table = filter_languages(table, params, ledger)
    valid, failures = validate_rows(table, load_schema("normalized"))
    if not failures.empty:
        ledger.drop(table.iloc[failures["index"]], "quarantined", failures["check"],
                    field=failures["field"], detail=failures["detail"])
    taken_in = responses_of(raw)
    kept = responses_of(valid)
    ledger.count_responses(taken_in, kept, empty=taken_in - responses_of(cleaned),
                           item_dropped=responses_of(cleaned) - kept)
    summary = ledger.summary(Counter(raw["source"]), Counter(valid["source"]))
    summary["languages"] = {str(k): int(v) for k, v in
                            valid["language"].value_counts().sort_index().items()}
    summary["language_decided_by"] = decided_by
    with StagedWrites() as out:
        out.parquet(to_arrow(valid, context.vocabulary.arrow_type()), paths.normalized)
        ledger.write(out, paths, summary)
    languages = ", ".join(f"{k} {v}" for k, v in summary["languages"].items())
    return StageResult(STAGE, summary, {"languages": summary["languages"]},
                       [f"languages: {languages}"])


def clean(raw: pd.DataFrame) -> pd.DataFrame:
    """Cleaned turns, prompt and responses; a response that cleans to nothing is dropped."""
    table = raw.copy()
    table["messages"] = [[{**m, "content": clean_text(m["content"])} for m in messages]
                         for messages in table["messages"]]
    table["prompt"] = [messages[-1]["content"] for messages in table["messages"]]
    table["responses"] = [[{**r, "text": clean_text(r["text"])} for r in responses
                           if clean_text(r["text"])] for responses in table["responses"]]
    return table


def detect_languages(table: pd.DataFrame, params: NormalizeParams,
                     engine: Engine) -> tuple[pd.DataFrame, dict[str, int]]:
    """The language of each item's prompt and response (see `curation.core.language`).

    The response is read too because prompts are often one short line, where detectors
    are unreliable (langdetect reads "Tell me a joke" as Finnish); a text still shorter than
    `language_min_chars` is undetermined ("und") rather than guessed. Each distinct text is
    detected once.
    """
    texts = [f"{p}\n{r[0]['text']}" if r else p
             for p, r in zip(table["prompt"], table["responses"], strict=True)]
    distinct = list(dict.fromkeys(texts))
    spec = LanguageId(params.langdetect_seed, params.language_min_chars,
                      params.language_max_chars, params.language_first_pass,
                      params.fasttext_min_prob)
    batches = (pa.table({"text": distinct[i:i + params.batch_size]})
               for i in range(0, len(distinct), params.batch_size))
    with bar(len(distinct), "detect language", " texts") as shown:
        found = pa.concat_tables(engine.map(partial(detect_table, spec=spec), batches, shown)
                                 ) if distinct else detect_table(pa.table({"text": []}), spec)
    row = {text: i for i, text in enumerate(distinct)}
    picked = found.take(pa.array([row[text] for text in texts], pa.int64()))
    table = table.copy()
    table["language"] = pd.array(picked["language"].to_pylist(), dtype="str")
    table["language_prob"] = pd.array(picked["prob"].to_pylist(), dtype="float64")
    decided_by = Counter(d or "too_short" for d in found["detector"].to_pylist())
    return table, dict(sorted(decided_by.items()))


def filter_lengths(table: pd.DataFrame, params: NormalizeParams,
                   ledger: StageLedger) -> pd.DataFrame:
    """Drop prompts outside the allowed lengths, before the costly language detection (a
    20 MB prompt is too long, whatever its language)."""
    length = table["prompt"].str.len()
    short = length < params.min_prompt_chars
    long = length > params.max_prompt_chars
    for reason, rows in (("prompt_too_short", short), ("prompt_too_long", long)):
        ledger.drop(table[rows], "filtered", reason, field="prompt",
                    detail=length[rows].astype(str).reset_index(drop=True) + " chars")
    return table[~(short | long)].reset_index(drop=True)


def filter_languages(table: pd.DataFrame, params: NormalizeParams,
                     ledger: StageLedger) -> pd.DataFrame:
    """Drop items detected in a language outside `languages` (all kept when it is empty)."""
    if not params.languages:
        return table
    allowed = list(params.languages) + ([UNDETERMINED] if params.keep_undetermined else [])
    wrong = ~table["language"].isin(allowed)
    ledger.drop(table[wrong], "filtered", "language", field="language",
                detail=("detected " + table["language"][wrong] + " (p="
                        + table["language_prob"][wrong].round(2).astype(str) + ")"
                        ).reset_index(drop=True))
    return table[~wrong].reset_index(drop=True)
