"""Stage `pull`: read every source into `data/raw/<source>.parquet`, one row per item.

A record (or, for sources whose records are turns, a conversation of records) becomes an
item: its messages, prompt, responses with their judgments, expected behaviour and
provenance. What does not become an item says why in the ledger: a record that cannot be
read or breaks the raw schema is quarantined; a turn record is merged into its
conversation; an item whose conversation the source already gave is merged into that item
(its response joins the others); a record id used twice is quarantined.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from tqdm import tqdm

from curation.core.items import to_arrow
from curation.core.judgments import Vocabulary
from curation.core.ledger import StageLedger, ledger_figures
from curation.core.schemas import load_schema, validate_rows
from curation.core.tableio import StagedWrites
from curation.core.text import clean_text
from curation.sources.assemble import Assembled, assemble, pair_contrasts
from curation.sources.inputs import InputFile, input_files
from curation.sources.readers import Problem
from curation.sources.spec import FieldMap, Source, load_sources
from curation.stages.base import Context, StageResult

STAGE = "pull"
RAW_COLUMNS = ["id", "messages", "prompt", "responses", "expected_behavior", "contrast_of",
               "source", "source_record_id", "source_category", "source_license", "family_key"]


@dataclass
class PulledSource:
    source: Source
    rows: pd.DataFrame
    rows_in: int
    responses: Counter[str]  # in, kept, moved and dropped reasons
    pin: dict[str, Any]


def run(context: Context) -> StageResult:
    """Pull every source, then write all outputs at once.

    Reference sources (evaluation sets a release must not contain) go to
    `data/references/`, with their own counts under the ledger's `references`: they are
    not items of the release, so the pipeline's chain of counts leaves them out.
    """
    paths = context.paths
    vocabulary = context.vocabulary
    sources = load_sources(context.sources_folder, context.category_labels,
                           tuple(vocabulary.by_name()))
    roots = [paths.root, *(paths.root / root for root in context.params.pull.data_roots)]
    ledger, references = StageLedger(STAGE), StageLedger(STAGE)
    pulled = [pull_source(source, paths.cache, roots, vocabulary,
                          references if source.role == "reference" else ledger)
              for source in sources]
    items = [p for p in pulled if p.source.role == "release"]
    reference_sets = [p for p in pulled if p.source.role == "reference"]
    summary = _summary(ledger, items)
    summary["references"] = _summary(references, reference_sets)
    pins = {p.source.name: {**p.pin, "role": p.source.role} for p in pulled}
    with StagedWrites() as out:
        for p in pulled:
            folder = paths.raw_dir if p in items else paths.references_dir
            out.parquet(to_arrow(p.rows, vocabulary.arrow_type()),
                        folder / f"{p.source.name}.parquet")
        out.parquet(pd.concat([ledger.dropped(), references.dropped()], ignore_index=True),
                    paths.dropped(STAGE))
        out.json(summary, paths.stage_ledger(STAGE))
        out.json({**ledger_figures(summary), "references_kept": summary["references"]["kept"]},
                 paths.metrics(STAGE))
        out.json(pins, paths.report("sources"))
    paths.references_dir.mkdir(parents=True, exist_ok=True)  # a dvc output, even if empty
    for folder, written in ((paths.raw_dir, items), (paths.references_dir, reference_sets)):
        current = {f"{p.source.name}.parquet" for p in written}
        for stale in folder.glob("*.parquet"):
            if stale.name not in current:
                stale.unlink()
    lines = [f"{source}: {counts['kept']} items ({counts['dropped']} rows dropped or merged)"
             for source, counts in summary["by_source"].items()]
    lines += [f"{source}: {counts['kept']} reference items (never released)"
              for source, counts in summary["references"]["by_source"].items()]
    return StageResult(STAGE, summary, pins, lines)


def _summary(ledger: StageLedger, pulled: list[PulledSource]) -> dict[str, Any]:
    """The ledger counts of some pulled sources, responses included."""
    responses: Counter[str] = sum((p.responses for p in pulled), Counter())
    ledger.count_responses(responses["in"], responses["kept"], responses["moved"],
                           **{k.removeprefix("dropped:"): v for k, v in responses.items()
                              if k.startswith("dropped:")})
    return ledger.summary(Counter({p.source.name: p.rows_in for p in pulled}),
                          Counter({p.source.name: len(p.rows) for p in pulled}))


def pull_source(source: Source, cache: Path, roots: list[Path], vocabulary: Vocabulary,
                ledger: StageLedger) -> PulledSource:
    """All items of one source; what is not an item goes to `ledger`."""
    items: list[dict[str, Any]] = []
    problems: list[dict[str, Any]] = []
    merged: list[dict[str, Any]] = []
    rows_in = 0
    missing: dict[str, dict[str, int]] = {}
    files = list(input_files(source, cache, roots))
    for file in files:
        is_txt = source.kind != "hub" and source.format_of(file.name) == "txt"
        fields = FieldMap() if is_txt else source.fields
        found: dict[str, int] = {}  # column -> parsed records where its path leads
        records = tqdm(file.records(), desc=f"pull {source.name}", unit=" rows", disable=None,
                       leave=False)
        parsed = in_file = 0
        first_problem = None
        for assembled in assemble(source, file, fields, records, vocabulary, found):
            in_file += len(assembled.records) or 1  # a twin is one more row of its record
            parsed += sum(r.problem is None for r in assembled.records)
            first_problem = first_problem or assembled.problem
            _sort(assembled, items, problems, merged)
        rows_in += in_file
        if in_file > 1 and not parsed and first_problem is not None:
            raise source.error("format", f"no record of {file.name} could be read (the first: "
                               f"{first_problem.detail}); is it in the format the source says?")
        if parsed and not found.get("prompt") and source.conversation is None:
            raise source.error("fields.prompt", f"the prompt field '{fields.prompt}' is in no "
                               f"record of {file.name}")
        gaps = {column: parsed - found.get(column, 0) for column in fields.mapped()
                if parsed - found.get(column, 0) > 0 and source.conversation is None}
        if gaps:
            missing[file.name] = gaps

    responses: Counter[str] = Counter()
    responses["in"] = sum(len(i["responses"]) for i in items) + sum(
        len(p.get("responses") or []) for p in problems)
    responses["dropped:item_quarantined"] = sum(len(p.get("responses") or []) for p in problems)
    if problems:
        bad = pd.DataFrame(problems)
        ledger.drop(bad, "quarantined", bad["check"], field=bad["field"], detail=bad["detail"])
    if merged:
        turns = pd.DataFrame(merged)
        ledger.drop(turns, "merged", "turn_of_conversation", duplicate_of=turns["item"],
                    detail="a turn of conversation " + turns["item"])
    pair_contrasts(items)
    table = pd.DataFrame(items, columns=RAW_COLUMNS)
    table = table.astype({c: "str" for c in RAW_COLUMNS if c not in ("messages", "responses")})
    table = _merge_same_conversation(table, ledger, responses)
    valid, failures = validate_rows(table, load_schema("raw"))
    if not failures.empty:
        broken = table.iloc[failures["index"]]
        responses["dropped:item_quarantined"] += int(broken["responses"].map(len).sum())
        ledger.drop(broken, "quarantined", failures["check"], field=failures["field"],
                    detail=failures["detail"])
    reused = valid["source_record_id"].duplicated(keep="first")
    if reused.any():
        first = valid[~reused].set_index("source_record_id")["id"]
        dups = valid[reused]
        owner = dups["source_record_id"].map(first)
        responses["dropped:item_quarantined"] += int(dups["responses"].map(len).sum())
        ledger.drop(dups, "quarantined", "duplicate_record_id",
                    field=source.fields.record_id or "record_id", duplicate_of=owner,
                    detail="record id " + dups["source_record_id"] + " is also item " + owner)
    kept = valid[~reused].reset_index(drop=True)
    responses["kept"] = int(kept["responses"].map(len).sum())
    pin = _pin(source, files)
    if missing:
        pin["missing_fields"] = missing
    return PulledSource(source, kept, rows_in, responses, pin)


def _sort(assembled: Assembled, items: list[dict[str, Any]], problems: list[dict[str, Any]],
          merged: list[dict[str, Any]]) -> None:
    """An assembled item to `items` (its extra turn records to `merged`), or to `problems`."""
    problem = assembled.problem or _text_problem(assembled.row)
    if problem is not None:
        for record in assembled.records:
            problems.append({**assembled.row, "field": problem.field, "check": problem.check,
                             "detail": problem.detail, "record": record.raw})
        return
    items.append(assembled.row)
    for record in assembled.records[:-1]:
        merged.append({"id": None, "source": assembled.row["source"], "item":
                       assembled.row["id"], "source_record_id":
                       f"{assembled.row['source_record_id']}/{record.row}",
                       "record": record.raw})


def _text_problem(row: dict[str, Any]) -> Problem | None:
    """A prompt with nothing left after cleanup would be an empty item downstream."""
    if not clean_text(row["prompt"]):
        return Problem("prompt", "empty", "prompt is empty (or only invisible and control "
                       "characters)")
    return None


def _merge_same_conversation(table: pd.DataFrame, ledger: StageLedger,
                             responses: Counter[str]) -> pd.DataFrame:
    """A conversation the source gives again is one item: later copies are merged into the
    first, their responses joining its own (an identical response is dropped)."""
    repeated = table["id"].duplicated(keep="first")
    if not repeated.any():
        return table
    first_row = {item: i for i, item in reversed(list(enumerate(table["id"])))}
    table = table.copy()
    for i in table.index[repeated]:
        target = table.at[first_row[table.at[i, "id"]], "responses"]
        for response in table.at[i, "responses"]:
            if any(_same(response, r) for r in target):
                responses["dropped:identical_response"] += 1
            else:
                target.append(response)
                responses["moved"] += 1
    dups = table[repeated]
    ledger.drop(dups, "merged", "same_conversation_in_source", duplicate_of=dups["id"],
                detail="the source gives this conversation again (as "
                + dups["id"].map(dict(zip(table["id"], table["source_record_id"],
                                          strict=False))) + ")")
    return table[~repeated].reset_index(drop=True)


def _same(a: dict[str, Any], b: dict[str, Any]) -> bool:
    return clean_text(a["text"]) == clean_text(b["text"]) and a["model"] == b["model"]


def _pin(source: Source, files: list[InputFile]) -> dict[str, Any]:
    """What exactly was pulled: enough to cite it and to tell when it changed."""
    pin: dict[str, Any] = {"kind": source.kind, "license": source.license,
                           "citation": source.citation, "homepage": source.homepage,
                           "description": source.description}
    if source.artifact is not None:
        pin["artifact"] = source.artifact.model_dump()
    if source.hub is not None:
        pin["hub"] = source.hub.model_dump(exclude_none=True)
    pin["files"] = {f.name: f.fingerprint for f in files}
    return pin
