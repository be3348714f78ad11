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
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa

from curation.core.arrays import first_positions, repeated_values
from curation.core.items import from_arrow, responses_of, to_arrow
from curation.core.judgments import Vocabulary
from curation.core.ledger import StageLedger, ledger_figures
from curation.core.progress import bar
from curation.core.schemas import load_schema, validate_rows
from curation.core.tableio import ROWS_PER_GROUP, RowGroups, SpillFile, StagedWrites
from curation.core.text import clean_text, shows_something
from curation.sources.assemble import CONTRAST_KEY, Assembled, Contrasts, assemble
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
    kept: int
    rows_in: int
    responses: Counter[str]  # in, kept, moved and dropped reasons
    pin: dict[str, Any]


def run(context: Context) -> StageResult:
    """Pull every source, each into its own file as it reads (`pull.batch_size` items
    in memory at a time); all outputs appear together when every source is pulled.

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
    schema = raw_schema(vocabulary)
    with StagedWrites() as out:
        pulled = []
        for source in sources:
            folder = paths.references_dir if source.role == "reference" else paths.raw_dir
            writer = out.row_groups(folder / f"{source.name}.parquet", schema, ROWS_PER_GROUP)
            pulled.append(pull_source(source, paths.cache, roots, vocabulary,
                                      references if source.role == "reference" else ledger,
                                      writer, context.params.pull.batch_size))
            writer.close()  # its last rows written now, not held until every source is
        items = [p for p in pulled if p.source.role == "release"]
        reference_sets = [p for p in pulled if p.source.role == "reference"]
        summary = _summary(ledger, items)
        summary["references"] = _summary(references, reference_sets)
        pins = {p.source.name: {**p.pin, "role": p.source.role} for p in pulled}
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


def raw_schema(vocabulary: Vocabulary) -> pa.Schema:
    """The arrow schema of `data/raw/<source>.parquet`."""
    empty = pd.DataFrame({c: pd.Series(dtype=object if c in ("messages", "responses")
                                       else "str") for c in RAW_COLUMNS})
    return to_arrow(empty, vocabulary.arrow_type()).schema


def _summary(ledger: StageLedger, pulled: list[PulledSource]) -> dict[str, Any]:
    """The ledger counts of some pulled sources, responses included."""
    responses: Counter[str] = sum((p.responses for p in pulled), Counter())
    ledger.count_responses(responses["in"], responses["kept"], responses["moved"],
                           **{k.removeprefix("dropped:"): v for k, v in responses.items()
                              if k.startswith("dropped:")})
    return ledger.summary(Counter({p.source.name: p.rows_in for p in pulled}),
                          Counter({p.source.name: p.kept for p in pulled}))


def pull_source(source: Source, cache: Path, roots: list[Path], vocabulary: Vocabulary,
                ledger: StageLedger, writer: RowGroups, batch_size: int
                ) -> PulledSource:
    """All items of one source to `writer`; what is not an item goes to `ledger`.

    Two passes over a temporary file, so that memory holds `batch_size` items and a few
    bytes per item: the first reads the records, the second merges conversations the
    source gives again, links contrast pairs and quarantines invalid rows and reused
    record ids, all of which need the whole source.
    """
    files = list(input_files(source, cache, roots))
    with SpillFile(f"pull-{source.name}") as spill:
        spool = _Spool(spill, vocabulary, batch_size)
        rows_in, missing = _read(source, files, vocabulary, spool, ledger)
        kept = _write(source, spool, vocabulary, ledger, writer)
    pin = _pin(source, files)
    if missing:
        pin["missing_fields"] = missing
    return PulledSource(source, kept, rows_in, spool.responses, pin)


class _Spool:
    """The first pass's items, `batch_size` at a time in a temporary parquet file, with
    the keys the second pass needs: item ids and record ids (as 64-bit numbers), contrast
    keys, and the response counts so far."""

    def __init__(self, spill: SpillFile, vocabulary: Vocabulary, batch_size: int) -> None:
        self.spill, self.batch_size = spill, batch_size
        self.judgments = vocabulary.arrow_type()
        self.schema = raw_schema(vocabulary).append(pa.field(CONTRAST_KEY, pa.large_string()))
        self.items: list[dict[str, Any]] = []
        self.problems: list[dict[str, Any]] = []
        self.merged: list[dict[str, Any]] = []
        self.ids: list[np.ndarray] = []
        self.record_keys: list[np.ndarray] = []
        self.contrasts = Contrasts()
        self.responses: Counter[str] = Counter()

    def add(self, assembled: Assembled, ledger: StageLedger) -> None:
        """An assembled item to the items (its extra turn records merged), or to problems."""
        problem = assembled.problem or _text_problem(assembled.row)
        if problem is not None:
            carried = len(assembled.row.get("responses") or []) or assembled.carried
            for record in assembled.records:
                self.problems.append({**assembled.row, "field": problem.field,
                                      "check": problem.check, "detail": problem.detail,
                                      "record": record.raw, "carried": carried})
                carried = 0  # a conversation's responses, counted once
        else:
            self.items.append(assembled.row)
            self.contrasts.note(assembled.row)
            for record in assembled.records[:-1]:
                self.merged.append({"id": None, "source": assembled.row["source"], "item":
                                    assembled.row["id"], "source_record_id":
                                    f"{assembled.row['source_record_id']}/{record.row}",
                                    "record": record.raw})
        if len(self.items) + len(self.problems) + len(self.merged) >= self.batch_size:
            self.flush(ledger)

    def flush(self, ledger: StageLedger) -> None:
        """Held items to the file, held problems and turn records to the ledger."""
        problem_responses = sum(p["carried"] for p in self.problems)
        self.responses["in"] += sum(len(i["responses"]) for i in self.items) + problem_responses
        self.responses["dropped:item_quarantined"] += problem_responses
        if self.problems:
            bad = pd.DataFrame(self.problems)
            ledger.drop(bad, "quarantined", bad["check"], field=bad["field"],
                        detail=bad["detail"])
        if self.merged:
            turns = pd.DataFrame(self.merged)
            ledger.drop(turns, "merged", "turn_of_conversation", duplicate_of=turns["item"],
                        detail="a turn of conversation " + turns["item"])
        if self.items:
            columns = [*RAW_COLUMNS, CONTRAST_KEY]
            frame = pd.DataFrame(self.items, columns=columns).astype(
                {c: "str" for c in columns if c not in ("messages", "responses")})
            self.spill.write(to_arrow(frame, self.judgments).cast(self.schema))
            self.ids.append(np.array([int(i, 16) for i in frame["id"]], dtype=np.uint64))
            self.record_keys.append(np.array([hash(r) for r in frame["source_record_id"]],
                                             dtype=np.int64))
        self.items, self.problems, self.merged = [], [], []

    def batches(self) -> Iterator[tuple[int, pa.Table]]:
        """The items written, in order, with the position of each batch's first row."""
        start = 0
        for batch in self.spill.batches(self.batch_size):
            yield start, pa.Table.from_batches([batch], schema=self.schema)
            start += batch.num_rows


def _read(source: Source, files: list[InputFile], vocabulary: Vocabulary, spool: _Spool,
          ledger: StageLedger) -> tuple[int, dict[str, dict[str, int]]]:
    """The first pass: every record of every file into `spool`. Returns the rows read and,
    per file, the mapped fields some parsed records lack."""
    rows_in = 0
    missing: dict[str, dict[str, int]] = {}
    for file in files:
        is_txt = source.kind != "hub" and source.format_of(file.name) == "txt"
        fields = FieldMap() if is_txt else source.fields
        found: dict[str, int] = {}  # column -> parsed records where its path leads
        records = bar(None, f"pull {source.name}: read {file.name}", iterable=file.records())
        parsed = in_file = 0
        first_problem = None
        for assembled in assemble(source, file, fields, records, vocabulary, found,
                                  spool.batch_size):
            in_file += len(assembled.records) or 1  # a twin is one more row of its record
            parsed += sum(r.problem is None for r in assembled.records)
            first_problem = first_problem or assembled.problem
            spool.add(assembled, ledger)
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
    spool.flush(ledger)
    return rows_in, missing


def _write(source: Source, spool: _Spool, vocabulary: Vocabulary, ledger: StageLedger,
           writer: RowGroups) -> int:
    """The second pass: the spooled items, merged, linked and validated, to `writer`.

    A conversation the source gives again is one item: later copies are merged into the
    first, their responses joining its own (an identical response is dropped). Of valid
    items sharing a record id, the first is kept and the others are quarantined.
    """
    ids = np.concatenate([np.zeros(0, np.uint64), *spool.ids])
    record_keys = np.concatenate([np.zeros(0, np.int64), *spool.record_keys])
    first = first_positions(ids)
    repeated = first != np.arange(len(ids))
    moved = _moved_responses(spool, first, repeated, ledger) if repeated.any() else None
    shared_keys = np.isin(record_keys, repeated_values(record_keys[~repeated]))
    owners: dict[str, str] = {}  # record id -> the item keeping it (ids that may be reused)
    schema, contract = raw_schema(vocabulary), load_schema("raw")
    kept = 0
    progress = bar(len(ids), f"pull {source.name}: write")
    for start, table in spool.batches():
        positions = np.arange(start, start + table.num_rows)
        fresh = ~repeated[positions]
        items = spool.contrasts.link(from_arrow(table.filter(pa.array(fresh))))
        positions = positions[fresh]
        if moved is not None:
            _merge_moved(items, positions, moved, spool.responses)
        valid, failures = validate_rows(items, contract)
        if not failures.empty:
            broken = items.iloc[failures["index"]]
            spool.responses["dropped:item_quarantined"] += responses_of(broken)
            ledger.drop(broken, "quarantined", failures["check"], field=failures["field"],
                        detail=failures["detail"])
            positions = np.delete(positions, failures["index"].to_numpy(dtype=int))
        reused = np.zeros(len(valid), dtype=bool)
        for row in np.flatnonzero(shared_keys[positions]):
            record, item = valid.at[row, "source_record_id"], valid.at[row, "id"]
            reused[row] = record in owners
            owners.setdefault(record, item)
        if reused.any():
            dups = valid[reused]
            owner = dups["source_record_id"].map(owners)
            spool.responses["dropped:item_quarantined"] += responses_of(dups)
            ledger.drop(dups, "quarantined", "duplicate_record_id",
                        field=source.fields.record_id or "record_id", duplicate_of=owner,
                        detail="record id " + dups["source_record_id"] + " is also item "
                        + owner)
        valid = valid[~reused]
        spool.responses["kept"] += responses_of(valid)
        kept += len(valid)
        writer.write(to_arrow(valid, vocabulary.arrow_type()).cast(schema))
        progress.update(table.num_rows)
    progress.close()
    return kept


@dataclass
class _Moved:
    """The responses of conversations given again, for the items they join: the
    responses of `rows[starts[k]:starts[k + 1]]` join the item at `targets[k]`."""

    targets: np.ndarray
    starts: np.ndarray
    responses: pa.Array  # one list of responses per merged row, ordered by target
    categories: dict[int, str]  # a target without a category: the first a copy gives


def _moved_responses(spool: _Spool, first: np.ndarray, repeated: np.ndarray,
                     ledger: StageLedger) -> _Moved:
    """Read the spool once for the rows that repeat an earlier conversation: they go to
    the ledger as merged, their responses are kept (in arrow) for the second pass. A copy
    that labels the conversation otherwise is merged under its own reason, naming the
    difference (the first copy's labels are kept; a missing category takes the copy's)."""
    record_of: dict[int, str] = {}  # position of an item given again -> its record id
    labels_of: dict[int, list[Any]] = {}  # ... -> its expected behaviour and category
    categories: dict[int, str] = {}
    is_target = np.zeros(len(first), dtype=bool)
    is_target[first[repeated]] = True
    parts, owners = [], []
    for start, table in spool.batches():
        positions = np.arange(start, start + table.num_rows)
        for row in np.flatnonzero(is_target[positions]):
            record_of[int(positions[row])] = table["source_record_id"][row].as_py()
            labels_of[int(positions[row])] = [table["expected_behavior"][row].as_py(),
                                              table["source_category"][row].as_py()]
        again = repeated[positions]
        if not again.any():
            continue
        dups = table.filter(pa.array(again))
        parts.append(dups["responses"].combine_chunks())
        owners.append(first[positions[again]])
        frame = spool.contrasts.link(from_arrow(dups))
        targets = [int(p) for p in first[positions[again]]]
        differences = [_differences(labels_of[t], behavior, category, t, categories)
                       for t, behavior, category in zip(
                           targets, frame["expected_behavior"], frame["source_category"],
                           strict=True)]
        detail = pd.Series([f"the source gives this conversation again (as {record_of[t]})"
                            + (f"; it says {d}, the first copy's labels are kept" if d else "")
                            for t, d in zip(targets, differences, strict=True)],
                           index=frame.index, dtype="str")
        reason = pd.Series(["same_conversation_labelled_otherwise" if d else
                            "same_conversation_in_source" for d in differences],
                           index=frame.index, dtype="str")
        ledger.drop(frame, "merged", reason, duplicate_of=frame["id"], detail=detail)
    owner = np.concatenate(owners)
    order = np.argsort(owner, kind="stable")
    ordered = owner[order]
    starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
    return _Moved(ordered[starts], np.append(starts, len(owner)),
                  pa.concat_arrays(parts).take(pa.array(order)), categories)


def _differences(first: list[Any], behavior: str, category: Any, target: int,
                 categories: dict[int, str]) -> str:
    """How a copy's labels differ from the first copy's ("" when they agree); a category
    the first lacks is filled in from the copy, not a difference."""
    found = []
    if behavior != first[0]:
        found.append(f"expected_behavior '{behavior}', not '{first[0]}'")
    if isinstance(category, str):
        if first[1] is None:
            first[1] = categories[target] = category
        elif category != first[1]:
            found.append(f"category '{category}', not '{first[1]}'")
    return " and ".join(found)


def _merge_moved(items: pd.DataFrame, positions: np.ndarray, moved: _Moved,
                 responses: Counter[str]) -> None:
    """Append to each item of a batch the responses of its copies, in the order the source
    gave them; a response identical to one it already has (same text, same model) is
    dropped."""
    found = np.searchsorted(moved.targets, positions)
    found = np.minimum(found, len(moved.targets) - 1)
    for row in np.flatnonzero(moved.targets[found] == positions):
        k = found[row]
        if int(positions[row]) in moved.categories:
            items.at[row, "source_category"] = moved.categories[int(positions[row])]
        own = list(items.at[row, "responses"])
        seen = {_response_key(r) for r in own}
        for copy in moved.responses[moved.starts[k]:moved.starts[k + 1]].to_pylist():
            for response in copy:
                if _response_key(response) in seen:
                    responses["dropped:identical_response"] += 1
                else:
                    seen.add(_response_key(response))
                    own.append(response)
                    responses["moved"] += 1
        items.at[row, "responses"] = own


def _response_key(response: dict[str, Any]) -> tuple[str, str | None]:
    return clean_text(response["text"]), response["model"]


def _text_problem(row: dict[str, Any]) -> Problem | None:
    """A prompt with nothing left after cleanup would be an empty item downstream."""
    if not shows_something(row["prompt"]):
        return Problem("prompt", "empty", "prompt is empty (or only invisible and control "
                       "characters)")
    return None


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
