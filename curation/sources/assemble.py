"""From a file's records to items: the conversation, the prompt, the responses with their
judgments, the expected behaviour, a benign record's harmful twin.

A record that cannot become (part of) an item comes back as a `Problem` with the field and
check, to be quarantined. Records that are turns of one conversation (`conversation.
group_by`) become one item; the others are `merged` into it. A file's turns are gathered
in bounded memory: held a batch at a time, then spilled to disk as sorted runs that are
merged back.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import math
import pickle
import re
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache
from operator import itemgetter
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from curation.core.items import ROLES, item_id
from curation.core.judgments import Vocabulary
from curation.core.progress import bar
from curation.core.tableio import SpillFile
from curation.core.text import shows_something
from curation.sources.fields import MISSING, lookup
from curation.sources.inputs import InputFile
from curation.sources.readers import Problem, Record
from curation.sources.spec import FieldMap, Source

_SURROGATE = re.compile("[\\ud800-\\udfff]")
# Chat and responses APIs' parts that are text: the type, and the key holding the text.
_TEXT_PARTS = {"text": "text", "input_text": "text", "output_text": "text",
               "refusal": "refusal"}


CONTRAST_KEY = "contrast_key"  # an item's pairing key until `Contrasts` links it


class Rejected(Exception):
    """A record that cannot become an item, and why."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.detail)
        self.problem = problem


@dataclass
class Assembled:
    """What one record (or one group of turn records) became."""

    records: list[Record]               # the input records it came from
    row: dict[str, Any]                 # the item, or the provenance of a rejected record
    problem: Problem | None = None
    carried: int = 0                    # a rejected record's responses (an item's are in row)


def assemble(source: Source, file: InputFile, fields: FieldMap, records: Iterator[Record],
             vocabulary: Vocabulary, found: dict[str, int], batch_size: int
             ) -> Iterator[Assembled]:
    """Items of one file; `found` counts, per mapped column, the records that have it;
    turns of conversations are held `batch_size` at a time."""
    conversation = source.conversation
    if conversation is not None and conversation.group_by is not None:
        yield from _grouped(source, file, fields, records, vocabulary, found, batch_size)
        return
    for record in records:
        base = _provenance(source, file, record)
        if record.problem is not None:
            yield Assembled([record], base, record.problem)
            continue
        turns = None
        try:
            values = _values(fields, record, found)
            if conversation is not None:
                turns = (_turn_list(source, record, conversation.turns)
                         if conversation.turns is not None else
                         _transcript_turns(source, record, conversation.transcript or ""))
            else:
                turns = [("user", _text(values, fields, "prompt", required=True))]
            items = _items(source, file, fields, record, values, turns, vocabulary, base)
        except Rejected as rejected:
            yield Assembled([record], base, rejected.problem,
                            _carried(fields, record, turns))
            continue
        yield Assembled([record], items[0])
        for twin in items[1:]:  # made from the same record: one more row, no more records
            yield Assembled([], twin)


def _carried(fields: FieldMap, record: Record, turns: list[tuple[str, str]] | None) -> int:
    """The response a rejected record (or conversation) holds, so that the ledger counts it
    in and quarantined with it: as `_items` would take it, its closing assistant turns when
    its `turns` were read, else a text in its response field."""
    answer = [text for _, text in itertools.takewhile(lambda turn: turn[0] == "assistant",
                                                     reversed(turns or []))]
    if answer:
        return int(any(map(_visible, answer)))
    if fields.response is None or record.values is None:
        return 0
    text = lookup(record.values, record.header, fields.response)
    return int(_visible(text))


def _visible(text: Any) -> bool:
    """Whether a text says something: a response of only blanks or invisible characters
    is no response, and an earlier turn of them is left out of the conversation."""
    return isinstance(text, str) and shows_something(text)


def _provenance(source: Source, file: InputFile, record: Record) -> dict[str, Any]:
    return {"id": None, "source": source.name, "source_record_id": f"{file.name}:{record.row}"}


def _values(fields: FieldMap, record: Record, found: dict[str, int]) -> dict[str, Any]:
    values = {}
    for column, path in fields.mapped().items():
        value = lookup(record.values or {}, record.header, path)
        if value is not MISSING:
            found[column] = found.get(column, 0) + 1
            for text in [value] if isinstance(value, str) else (
                    value if isinstance(value, list | dict) else ()):
                if isinstance(text, str):  # a text, an item of a list, a flag's name
                    _unicode(text, path)
            values[column] = value
    return values


def _text(values: dict[str, Any], fields: FieldMap, column: str, required: bool = False
          ) -> str | None:
    value = values.get(column)
    path = getattr(fields, column) or column
    if value is None:
        if required:
            raise Rejected(Problem(path, "missing_field", f"record has no {column} field"))
        return None
    if not isinstance(value, str):
        raise Rejected(Problem(path, "not_text", f"{column} is {type(value).__name__}, not text"))
    if required and not value.strip():
        raise Rejected(Problem(path, "empty", f"{column} is empty"))
    _unicode(value, path)
    return value or None


def _unicode(text: str, where: str) -> None:
    """Text that cannot be written as UTF-8 (an unpaired surrogate from a JSON escape)."""
    if _SURROGATE.search(text):
        raise Rejected(Problem(where, "utf8", "text holds an unpaired surrogate (not valid "
                               "Unicode)"))


def _turn_text(content: Any, where: str, not_text: str) -> str:
    """A turn's text: a string, or the chat-API form, a list of parts such as
    `{"type": "text", "text": ...}` (`input_text`, `output_text`, and an assistant's
    `{"type": "refusal", "refusal": ...}`), whose texts are joined by line breaks. A part
    of another type (an image, audio) carries what the text alone does not say: the turn
    is quarantined rather than read without it."""
    if isinstance(content, list) and content and all(isinstance(p, dict) for p in content):
        kinds = [p.get("type", "text") for p in content]
        other = next((k for k in kinds if not (isinstance(k, str) and k in _TEXT_PARTS)),
                     None)
        if other is not None:
            raise Rejected(Problem(where, "not_text", f"a turn holds a part of type "
                                   f"{repr(other)[:40]}, not only text"))
        texts = [p.get(_TEXT_PARTS[kind]) for p, kind in zip(content, kinds, strict=True)]
        if all(isinstance(text, str) for text in texts):
            content = "\n".join(texts)
    if not isinstance(content, str):
        raise Rejected(Problem(where, "not_text", not_text))
    _unicode(content, where)
    return content


def _role(source: Source, raw: Any, where: str) -> str:
    conversation = source.conversation
    assert conversation is not None
    if raw is MISSING:
        raise Rejected(Problem(where, "unknown_role", "the turn has no role"))
    role = conversation.roles.get(str(raw), raw) if isinstance(raw, str) else raw
    if role not in ROLES:
        raise Rejected(Problem(where, "unknown_role", f"role {raw!r} is not system, user or "
                               "assistant (map it in conversation.roles)"))
    return str(role)


def _turn_list(source: Source, record: Record, path: str) -> list[tuple[str, str]]:
    conversation = source.conversation
    assert conversation is not None
    turns = lookup(record.values or {}, record.header, path)
    if turns is MISSING or not isinstance(turns, list) or not turns:
        raise Rejected(Problem(path, "not_a_conversation", "no list of turns"))
    found = []
    for i, turn in enumerate(turns):
        where = f"{path}[{i}]"
        if not isinstance(turn, dict):
            raise Rejected(Problem(where, "not_a_turn", "a turn is not an object"))
        content = _turn_text(lookup(turn, None, conversation.content),
                             f"{where}.{conversation.content}", "a turn's content is not text")
        found.append((_role(source, lookup(turn, None, conversation.role),
                            f"{where}.{conversation.role}"), content))
    return found


def _transcript_turns(source: Source, record: Record, path: str) -> list[tuple[str, str]]:
    """The turns of a transcript text: each begins on a line of its own with a speaker's
    name and a colon (`Human: ...`, as in Anthropic's HH-RLHF and red-team data); the
    speakers are the keys of `conversation.roles`, or system, user and assistant."""
    conversation = source.conversation
    assert conversation is not None
    text = lookup(record.values or {}, record.header, path)
    if not isinstance(text, str):
        raise Rejected(Problem(path, "not_a_conversation", "no transcript text"))
    _unicode(text, path)
    speakers = tuple(conversation.roles) or ROLES
    parts = _speaker_pattern(speakers).split(text)
    if parts[0].strip() or len(parts) == 1:
        raise Rejected(Problem(path, "not_a_conversation", "the transcript does not begin "
                               f"with a speaker ({', '.join(s + ':' for s in speakers)})"))
    return [(_role(source, name, path), body.strip())
            for name, body in zip(parts[1::2], parts[2::2], strict=True)]


@cache
def _speaker_pattern(speakers: tuple[str, ...]) -> re.Pattern[str]:
    """A speaker's name and colon at a line's start; the longest name first, so "User 2"
    is not read as "User"."""
    names = "|".join(map(re.escape, sorted(speakers, key=len, reverse=True)))
    return re.compile(rf"^[ \t]*({names})[ \t]*:[ \t]*", re.MULTILINE)


def _grouped(source: Source, file: InputFile, fields: FieldMap, records: Iterator[Record],
             vocabulary: Vocabulary, found: dict[str, int], batch_size: int
             ) -> Iterator[Assembled]:
    """Records that are turns, gathered into conversations in first-seen order."""
    conversation = source.conversation
    assert conversation is not None and conversation.group_by is not None
    numbers: dict[str, int] = {}  # conversation key -> its number, in first-seen order
    turns = _TurnRuns(batch_size)
    for record in records:
        values = record.values or {}
        key = lookup(values, record.header, conversation.group_by)
        order = lookup(values, record.header, conversation.order) if conversation.order else 0
        if record.problem is not None:
            yield Assembled([record], _provenance(source, file, record), record.problem)
        elif key is MISSING or key is None or isinstance(key, dict | list):
            yield Assembled([record], _provenance(source, file, record), Problem(
                conversation.group_by, "no_conversation", "record names no conversation"))
        elif isinstance(key, str) and _SURROGATE.search(key):
            yield Assembled([record], _provenance(source, file, record), Problem(
                conversation.group_by, "utf8", "conversation key holds an unpaired surrogate "
                "(not valid Unicode)"))
        elif (order is MISSING or isinstance(order, bool) or not isinstance(order, int | float)
              or not math.isfinite(order)):
            yield Assembled([record], _provenance(source, file, record), Problem(
                conversation.order or "order", "bad_order", "turn position is not a number"))
        else:
            turns.add(numbers.setdefault(str(key), len(numbers)), order, record)
    keys = list(numbers)
    del numbers
    for number, members in bar(len(keys), f"pull {source.name}: gather {file.name}'s "
                               "conversations", " conversations", turns.conversations()):
        key = keys[number]
        members.sort(key=lambda m: m[0])
        ordered = [record for _, record in members]
        last = ordered[-1]
        base = {"id": None, "source": source.name, "source_record_id": f"{file.name}:{key}"}
        said: list[tuple[str, str]] | None = None  # the turns, once all are read
        try:
            read = []
            for record in ordered:
                values = record.values or {}
                content = _turn_text(lookup(values, record.header, conversation.content),
                                     conversation.content, f"turn {record.row} has no text")
                read.append((_role(source, lookup(values, record.header, conversation.role),
                                   conversation.role), content))
            said = read
            values = _values(fields, last, found)
            items = _items(source, file, fields, last, values, said, vocabulary, base)
        except Rejected as rejected:
            yield Assembled(ordered, base, rejected.problem, _carried(fields, last, said))
            continue
        yield Assembled(ordered, items[0])
        for twin in items[1:]:
            yield Assembled([], twin)


class _TurnRuns:
    """Turn records by conversation number: held `batch_size` at a time, each full batch
    sorted by number and spilled to a temporary parquet file as one run (row group);
    `conversations` merges the runs back, so memory stays bounded whatever the file's
    size. Within a conversation, turns keep the order they were read in. A file's records
    share one header: it is held once and put back on each turn read from a run, not
    spilled with every turn."""

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self.held: list[tuple[int, int, tuple[Any, Record]]] = []  # (number, seq, turn)
        self.seq = 0
        self.spill = SpillFile("pull-turns")
        self.runs = 0
        self.header: dict[str, Any] | None = None

    def add(self, number: int, order: Any, record: Record) -> None:
        self.header = record.header
        self.held.append((number, self.seq, (order, record)))
        self.seq += 1
        if len(self.held) >= self.batch_size:
            self._write_run()

    def _write_run(self) -> None:
        self.held.sort(key=itemgetter(0))  # stable: read order kept within a conversation
        self.spill.write(pa.table({
            "number": pa.array([t[0] for t in self.held], pa.int64()),
            "seq": pa.array([t[1] for t in self.held], pa.int64()),
            "turn": pa.array([pickle.dumps((t[2][0], dataclasses.replace(t[2][1], header=None)),
                                           protocol=pickle.HIGHEST_PROTOCOL)
                              for t in self.held], pa.large_binary()),
        }, schema=_RUN_SCHEMA), row_group_size=len(self.held))
        self.runs += 1
        self.held = []

    def conversations(self) -> Iterator[tuple[int, list[tuple[Any, Record]]]]:
        """(number, [(order, record), ...]) per conversation, by number."""
        self.held.sort(key=itemgetter(0))
        runs: list[Iterator[tuple[int, int, tuple[Any, Record]]]] = [iter(self.held)]
        try:
            spilled = self.spill.reader()
            if spilled is not None:
                # About `batch_size` turns in memory across all runs while merging.
                step = max(64, self.batch_size // (self.runs + 1))
                runs += [_read_run(spilled, group, step, self.header)
                         for group in range(self.runs)]
            merged = heapq.merge(*runs)  # (number, seq) is unique: turns are never compared
            for number, group in itertools.groupby(merged, key=itemgetter(0)):
                yield number, [turn for _, _, turn in group]
        finally:
            self.spill.close()


_RUN_SCHEMA = pa.schema([("number", pa.int64()), ("seq", pa.int64()),
                         ("turn", pa.large_binary())])


def _read_run(spilled: pq.ParquetFile, group: int, batch_size: int,
              header: dict[str, Any] | None) -> Iterator[tuple[int, int, tuple[Any, Record]]]:
    for batch in spilled.iter_batches(batch_size=batch_size, row_groups=[group]):
        for number, seq, blob in zip(*(c.to_pylist() for c in batch.columns), strict=True):
            order, record = pickle.loads(blob)
            yield number, seq, (order, dataclasses.replace(record, header=header))


def _items(source: Source, file: InputFile, fields: FieldMap, record: Record,
           values: dict[str, Any], turns: list[tuple[str, str]], vocabulary: Vocabulary,
           base: dict[str, Any]) -> list[dict[str, Any]]:
    """The item of a conversation (trailing assistant turns are its response; an earlier
    turn that is not `_visible` is left out), and the harmful twin a benign record may
    carry."""
    record_id = values.get("record_id")
    if record_id is not None:
        if isinstance(record_id, bool) or not isinstance(record_id, str | int):
            raise Rejected(Problem(fields.record_id or "record_id", "bad_record_id",
                                   f"record id is {type(record_id).__name__}, not text or a "
                                   "number"))
        base = {**base, "source_record_id": str(record_id)}
        _unicode(base["source_record_id"], fields.record_id or "record_id")
    answer: list[str] = []
    while turns and turns[-1][0] == "assistant":
        answer.insert(0, turns[-1][1])
        turns = turns[:-1]
    if not turns or turns[-1][0] != "user":
        raise Rejected(Problem(fields.prompt, "no_user_turn", "the conversation has no user "
                               "turn to answer" if all(r != "user" for r, _ in turns) else
                               f"the conversation ends with a {turns[-1][0]} turn, not a "
                               "user turn or its answer"))
    messages = [{"role": role, "content": content} for role, content in turns[:-1]
                if _visible(content)]
    messages.append({"role": "user", "content": _prompt(source, turns[-1][1])})
    if not messages[-1]["content"].strip():
        raise Rejected(Problem(fields.prompt, "empty", "prompt is empty"))
    category = _category(source, file, fields, values)
    behavior = _behavior(source, file, fields, values)
    text = ("\n\n".join(a for a in answer if _visible(a)) if answer
            else _text(values, fields, "response"))
    responses = [] if not _visible(text) else [{
        "text": text, "model": _model(source, fields, values), "source": source.name,
        "source_record_id": base["source_record_id"],
        "judgments": _judgments(source, record, vocabulary)}]
    contrast = values.get("contrast")
    family = values.get("family")
    for kind, key, path in (("family", family, fields.family),
                            ("contrast", contrast, fields.contrast)):
        if key is not None and (isinstance(key, bool) or not isinstance(key, str | int)):
            raise Rejected(Problem(path or kind, f"bad_{kind}_key", f"{kind} key is "
                                   f"{type(key).__name__}, not text or a whole number"))
    item = {**base, "id": item_id(source.name, messages), "messages": messages,
            "prompt": messages[-1]["content"], "responses": responses,
            "expected_behavior": behavior, "contrast_of": None, "source_category": category,
            "source_license": source.license,
            "family_key": None if family is None else f"{source.name}:{family}",
            CONTRAST_KEY: None if contrast is None else str(contrast)}
    twin_prompt = _text(values, fields, "twin")
    if twin_prompt is None or not twin_prompt.strip():
        return [item]
    twin_messages = [{"role": "user", "content": _prompt(source, twin_prompt)}]
    if item_id(source.name, twin_messages) == item["id"]:  # the same text, once cleaned
        raise Rejected(Problem(fields.twin or "twin", "twin_is_the_prompt",
                               "the harmful twin is the prompt itself"))
    twin = {**item, "id": item_id(source.name, twin_messages), "messages": twin_messages,
            "prompt": twin_messages[0]["content"], "responses": [],
            "expected_behavior": "refuse", "source_record_id": f"{base['source_record_id']}#twin"}
    return [{**item, "contrast_of": twin["id"]}, twin]


def _prompt(source: Source, text: str) -> str:
    """The prompt part of a packed "question + answer" text."""
    if source.prompt_separator and source.prompt_separator in text:
        return text.split(source.prompt_separator, 1)[0]
    return text


def _category(source: Source, file: InputFile, fields: FieldMap,
              values: dict[str, Any]) -> str | None:
    """The record's category: a text, the main one of a list, or of flags by name (the
    names flagged true); else the file's, the source's or none."""
    category = values.get("category")
    if isinstance(category, dict) and category and all(
            isinstance(flag, bool) for flag in category.values()):  # BeaverTails' flags
        category = [name for name, flag in category.items() if flag]
    if category is not None and not (isinstance(category, str) or (
            isinstance(category, list) and all(isinstance(c, str) for c in category))):
        raise Rejected(Problem(fields.category or "category", "bad_category",
                               f"category is {type(category).__name__}, not text, a list of "
                               "text or flags by name"))
    if isinstance(category, list):  # e.g. Do-Not-Answer's intent codes
        category = source.main_category(category)
    if source.category_from_file:
        category = Path(file.name).stem
    elif category in (None, ""):
        category = file.category or source.constants.category
    return None if category in (None, "") else str(category)


def _behavior(source: Source, file: InputFile, fields: FieldMap, values: dict[str, Any]) -> str:
    value = values.get("expected_behavior")
    if value is None:
        return file.expected_behavior or source.constants.expected_behavior
    mapped = source.behavior_of(str(value))
    if mapped is None:
        raise Rejected(Problem(fields.expected_behavior or "expected_behavior",
                               "unknown_expected_behavior", f"{value!r} is not in "
                               "expected_behavior_map"))
    return mapped


def _model(source: Source, fields: FieldMap, values: dict[str, Any]) -> str | None:
    model = values.get("model")
    return str(model) if isinstance(model, str | int) and str(model) else source.constants.model


def _judgments(source: Source, record: Record, vocabulary: Vocabulary) -> dict[str, Any]:
    """The record's scores in the vocabulary's names and types; several fields: the mean."""
    scale = vocabulary.by_name()
    judged: dict[str, Any] = dict.fromkeys(scale)
    for name, paths in source.judgments.items():
        found = []
        for path in [paths] if isinstance(paths, str) else paths:
            value = lookup(record.values or {}, record.header, path)
            if value is MISSING or value is None or value == "":
                continue
            try:
                found.append(scale[name].coerce(value))
            except ValueError as exc:
                raise Rejected(Problem(path, "bad_judgment", f"{name}: {exc}")) from None
        if found:
            judged[name] = (sum(found) / len(found) if scale[name].type == "float"
                            else found[-1])
    return judged


class Contrasts:
    """Items of a source sharing a contrast key: each benign one (comply) gets the first
    harmful one (refuse) as its `contrast_of`; the key itself is not kept. Items are noted
    as they are read and linked once the whole source has been read."""

    def __init__(self) -> None:
        self.harmful: dict[str, str] = {}

    def note(self, item: dict[str, Any]) -> None:
        key = item.get(CONTRAST_KEY)
        if key is not None and item["expected_behavior"] == "refuse":
            self.harmful.setdefault(key, item["id"])

    def link(self, items: pd.DataFrame) -> pd.DataFrame:
        """`items` (with their contrast key column) linked, without the key."""
        keys = items[CONTRAST_KEY]
        benign = keys.notna() & (items["expected_behavior"] == "comply")
        twins = keys[benign].map(self.harmful).dropna()
        items = items.drop(columns=[CONTRAST_KEY])
        items.loc[twins.index, "contrast_of"] = twins
        return items