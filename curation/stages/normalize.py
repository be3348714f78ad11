"""Stage `normalize`: clean texts, filter by length, detect the language, filter by
language, and validate against the normalized schema.

Steps, each with its own count in the ledger: clean -> length filter -> detect language ->
language filter -> validate.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from curation.core.config import NormalizeParams
from curation.core.engine import Engine
from curation.core.errors import CurationError
from curation.core.items import from_arrow, responses_of, to_arrow
from curation.core.language import UNDETERMINED, LanguageId, detect_table
from curation.core.ledger import StageLedger
from curation.core.progress import bar
from curation.core.schemas import load_schema, validate_rows
from curation.core.tableio import ROWS_PER_GROUP, StagedWrites, open_input
from curation.core.text import clean_text
from curation.stages.base import Context, StageResult

STAGE = "normalize"


@dataclass
class RawBatches:
    """The pulled sources, `rows` at a time, in source-name order: every file is checked
    before the first batch is read, and every batch has the contract's columns with the
    types of the first file."""

    raw_dir: Path
    rows: int

    def __post_init__(self) -> None:
        paths = sorted(self.raw_dir.glob("*.parquet"))
        if not paths:
            raise CurationError("no pulled sources; run `curate pull` first",
                                file=str(self.raw_dir))
        contract = load_schema("raw").columns
        self.files = [(path, open_input(path, "pull", contract)) for path in paths]
        first = self.files[0][1].schema_arrow
        self.schema = pa.schema([first.field(c) for c in first.names if c in contract])
        self.total = sum(file.metadata.num_rows for _, file in self.files)

    def __iter__(self) -> Iterator[pd.DataFrame]:
        for path, file in self.files:
            try:
                for batch in file.iter_batches(batch_size=self.rows, columns=self.schema.names):
                    table = pa.Table.from_batches([batch]).select(self.schema.names)
                    yield from_arrow(table.cast(self.schema))
            except (OSError, ValueError, pa.ArrowException) as exc:
                raise CurationError(f"not a readable parquet file "
                                    f"({str(exc).strip().splitlines()[0]}); run `curate pull` "
                                    "again", file=str(path)) from None


@dataclass
class _Batch:
    """One batch between its cleanup and its languages."""

    taken_in: pd.DataFrame
    cleaned: pd.DataFrame
    table: pd.DataFrame      # after the length filter
    texts: list[str]         # what the detectors read, per row
    distinct: list[str]      # each text once


def run(context: Context) -> StageResult:
    """Stream the pulled rows through the steps a batch at a time (memory is bounded by
    `normalize.batch_size`), detecting languages on the engine; write the normalized
    table and the ledger."""
    params, paths = context.params.normalize, context.paths
    engine = Engine(context.params.engine.kind, context.params.engine.address, params.num_proc)
    spec = LanguageId(params.langdetect_seed, params.language_min_chars,
                      params.language_max_chars, params.language_first_pass,
                      params.fasttext_min_prob)
    schema = load_schema("normalized")
    ledger = StageLedger(STAGE)
    batches = RawBatches(paths.raw_dir, params.batch_size)
    rows_in, kept, languages, decided_by, responses = (Counter(), Counter(), Counter(),
                                                       Counter(), Counter())
    ids: list[np.ndarray] = []
    pending: deque[_Batch] = deque()

    def to_detect() -> Iterator[pa.Table]:
        for raw in batches:
            cleaned = clean(raw)
            table = filter_lengths(cleaned, params, ledger)
            texts = detection_texts(table)
            pending.append(_Batch(raw, cleaned, table, texts, list(dict.fromkeys(texts))))
            yield pa.table({"text": pa.array(pending[-1].distinct, pa.string())})

    with StagedWrites() as out, bar(batches.total, "normalize (language ID)") as shown:
        writer = out.row_groups(paths.normalized, pa.schema([
            *batches.schema, pa.field("language", pa.large_string()),
            pa.field("language_prob", pa.float64())]), ROWS_PER_GROUP)
        for found in engine.map(partial(detect_table, spec=spec), to_detect()):
            batch = pending.popleft()
            table = with_languages(batch.table, batch.texts, batch.distinct, found)
            table = filter_languages(table, params, ledger)
            valid, failures = validate_rows(table, schema)
            if not failures.empty:
                ledger.drop(table.iloc[failures["index"]], "quarantined", failures["check"],
                            field=failures["field"], detail=failures["detail"])
            writer.write(to_arrow(valid, context.vocabulary.arrow_type()))
            rows_in.update(batch.taken_in["source"])
            kept.update(valid["source"])
            languages.update(valid["language"])
            decided_by.update(d or "too_short" for d in found["detector"].to_pylist())
            responses.update({"in": responses_of(batch.taken_in), "kept": responses_of(valid),
                              "cleaned": responses_of(batch.cleaned)})
            ids.append(np.array([int(i, 16) for i in valid["id"]], dtype=np.uint64))
            shown.update(len(batch.taken_in))
        _check_unique(ids, paths.normalized)
        ledger.count_responses(responses["in"], responses["kept"],
                               empty=responses["in"] - responses["cleaned"],
                               item_dropped=responses["cleaned"] - responses["kept"])
        summary = ledger.summary(rows_in, kept)
        summary["languages"] = {k: languages[k] for k in sorted(languages)}
        summary["language_decided_by"] = {k: decided_by[k] for k in sorted(decided_by)}
        ledger.write(out, paths, summary)
    listed = ", ".join(f"{k} {v}" for k, v in summary["languages"].items())
    return StageResult(STAGE, summary, {"languages": summary["languages"]},
                       [f"languages: {listed}"])


def _check_unique(ids: list[np.ndarray], path: Path) -> None:
    """Ids are unique across batches too (pull makes them so: a repeat is a bug upstream,
    and stops the stage before anything is written)."""
    every = np.concatenate(ids) if ids else np.empty(0, dtype=np.uint64)
    values, counts = np.unique(every, return_counts=True)
    if (counts > 1).any():
        raise CurationError(f"item id {int(values[counts > 1][0]):016x} appears twice; run "
                            "`curate pull` again", file=str(path), field="id")


def clean(raw: pd.DataFrame) -> pd.DataFrame:
    """Cleaned turns, prompt and responses; a response that cleans to nothing is dropped."""
    table = raw.copy()
    table["messages"] = [[{**m, "content": clean_text(m["content"])} for m in messages]
                         for messages in table["messages"]]
    table["prompt"] = [messages[-1]["content"] for messages in table["messages"]]
    table["responses"] = [[{**r, "text": clean_text(r["text"])} for r in responses
                           if clean_text(r["text"])] for responses in table["responses"]]
    return table


def detection_texts(table: pd.DataFrame) -> list[str]:
    """What the detectors read for each item: its prompt and first response together,
    because prompts are often one short line, where detectors are unreliable (langdetect
    reads "Tell me a joke" as Finnish); see `curation.core.language`."""
    return [f"{p}\n{r[0]['text']}" if r else p
            for p, r in zip(table["prompt"], table["responses"], strict=True)]


def with_languages(table: pd.DataFrame, texts: list[str], distinct: list[str],
                   found: pa.Table) -> pd.DataFrame:
    """The items with the language found for their text (each distinct text was read
    once)."""
    row = {text: i for i, text in enumerate(distinct)}
    picked = found.take(pa.array([row[text] for text in texts], pa.int64()))
    return table.assign(language=pd.array(picked["language"].to_pylist(), dtype="str"),
                        language_prob=pd.array(picked["prob"].to_pylist(), dtype="float64"))


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
