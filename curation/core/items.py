"""The item: what a model is asked to answer, with every response to it.

An item is a conversation (`messages`: `{role, content}` turns ending with a user turn;
`prompt` is that last user turn), every distinct response (`responses`: `{text, model,
source, source_record_id, judgments}`), what a model should do (`expected_behavior`:
`refuse` for harmful items, `comply` for benign look-alikes) and, for a benign item paired
with a harmful twin, the twin's id (`contrast_of`). Tables keep `messages` and `responses`
as nested parquet columns; this module holds their arrow types and the item id.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from curation.core.text import ID_LENGTH, clean_text

ROLES = ("system", "user", "assistant")
MESSAGE = pa.struct([("role", pa.string()), ("content", pa.string())])
NESTED = ("messages", "responses", "pii")
# Personal data found in an item (stage `redact`): which text (`messages[0].content`,
# `responses[1].text`), what type, and where it is in the released text (str offsets).
PII_SPAN = pa.struct([("field", pa.string()), ("type", pa.string()), ("start", pa.int64()),
                      ("end", pa.int64())])


SIGNALS = pa.struct([("refusal", pa.bool_()), ("referral", pa.bool_())])
# What annotators add beyond the judgment vocabulary (curation.annotation.agreement).
ANNOTATED_DETAIL = pa.struct([("grounding_strategies", pa.list_(pa.string())),
                              ("refusal_turn", pa.int64()), ("refusal_turn_n", pa.int64()),
                              ("refusal_phase", pa.string()), ("refusal_phase_n", pa.int64())])


def response_type(judgments: pa.StructType, labelled: bool = False) -> pa.StructType:
    """A response. From stage `label` on it also carries its automatic `signals`
    (core.signals) and the annotators' judgments aggregated (`annotated`, in the judgment
    vocabulary) with how many answers each rests on (`annotated_n`), and what the rubric's
    other questions add (`annotated_detail`: strategies, first refusing turn, its phase)."""
    counts = pa.struct([(f.name, pa.int64()) for f in judgments])
    return pa.struct([("text", pa.string()), ("model", pa.string()), ("source", pa.string()),
                      ("source_record_id", pa.string()), ("judgments", judgments),
                      *([("signals", SIGNALS), ("annotated", judgments),
                         ("annotated_n", counts), ("annotated_detail", ANNOTATED_DETAIL)]
                        if labelled else [])])


def response_id(item: str, response: dict[str, Any]) -> str:
    """Stable id of a response (its Argilla record id): its item, text and model."""
    key = "\x1f".join([item, response["text"], response.get("model") or ""])
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def item_id(source: str, messages: list[dict[str, str]]) -> str:
    """Stable id of an item: a hash of its source and its cleaned conversation (responses
    are not part of it: every response to the same conversation belongs to one item)."""
    parts = [source, *(f"{m['role']}:{clean_text(m['content'])}" for m in messages)]
    return hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()[:ID_LENGTH]


def user_text(messages: list[dict[str, str]]) -> str:
    """What duplicates are judged on: the user turns, in order (the prompt, single-turn)."""
    return "\n".join(m["content"] for m in messages if m["role"] == "user")


def user_texts(messages: pa.Array | pa.ChunkedArray) -> pa.Array:
    """`user_text` of every conversation of a `messages` column at once, in arrow (no
    Python object per turn)."""
    if isinstance(messages, pa.ChunkedArray):
        messages = messages.combine_chunks()
    turns = messages.flatten()
    user = pc.fill_null(pc.equal(pc.struct_field(turns, "role"), "user"), False)
    contents = pc.filter(pc.struct_field(turns, "content"), user)
    owners = pc.filter(pc.list_parent_indices(messages), user).to_numpy()
    offsets = np.concatenate([[0], np.cumsum(np.bincount(owners, minlength=len(messages)))])
    return pc.binary_join(pa.ListArray.from_arrays(pa.array(offsets, pa.int32()), contents),
                          "\n")


def with_first_response(texts: pa.Array, responses: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Each text, then a newline and its item's first response where it has one."""
    if isinstance(responses, pa.ChunkedArray):
        responses = responses.combine_chunks()
    first = pc.list_slice(responses, 0, 1)
    answers = pc.struct_field(first.flatten(), "text")
    where = np.full(len(texts), -1, dtype=np.int64)
    where[pc.list_parent_indices(first).to_numpy()] = np.arange(len(answers))
    joined = pc.binary_join_element_wise(
        texts, pc.take(answers, pa.array(where, mask=where < 0)), "\n")
    return pc.if_else(pc.is_null(joined), texts, joined)


def responses_of(items: pd.DataFrame) -> int:
    """How many responses the items hold."""
    return int(items["responses"].map(len).sum())


def nested_types(judgments: pa.StructType, labelled: bool = False) -> dict[str, pa.DataType]:
    """The arrow types of the nested columns of items."""
    return {"messages": pa.list_(MESSAGE),
            "responses": pa.list_(response_type(judgments, labelled)),
            "pii": pa.list_(PII_SPAN)}


def to_arrow(frame: pd.DataFrame, judgments: pa.StructType, labelled: bool = False,
             like: pa.Schema | None = None) -> pa.Table:
    """A table of items with its nested columns typed (empty judgments stay typed). The
    other columns that `like` has take its types: a batch in which such a column is all
    null would otherwise be typed null, and batches of one file must agree."""
    flat = frame.drop(columns=[c for c in NESTED if c in frame.columns])
    table = pa.Table.from_pandas(flat, preserve_index=False).replace_schema_metadata(None)
    for name in set(table.column_names) & set(like.names if like is not None else []):
        kind = like.field(name).type
        if table.schema.field(name).type != kind:
            table = table.set_column(table.column_names.index(name), name,
                                     table[name].cast(kind))
    if "contrast_of" in table.column_names:  # all null is still a column of ids
        table = table.set_column(table.column_names.index("contrast_of"), "contrast_of",
                                 table["contrast_of"].cast(pa.string()))
    types = nested_types(judgments, labelled)
    for position, name in enumerate(frame.columns):
        if name in NESTED:
            values = [None if v is None else list(v) for v in frame[name]]
            table = table.add_column(position, name, pa.array(values, type=types[name]))
    return table


def typed(table: pa.Table, judgments: pa.StructType, labelled: bool = False) -> pa.Table:
    """Items read back from parquet, their nested columns cast to `to_arrow`'s types
    (parquet names a list's values `element`, `to_arrow` names them `item`) and without
    schema metadata: written again, they have the bytes `to_arrow` would give."""
    for name, kind in nested_types(judgments, labelled).items():
        if name in table.column_names:
            table = table.set_column(table.column_names.index(name), name,
                                     table[name].cast(kind))
    return table.replace_schema_metadata(None)


def from_arrow(table: pa.Table) -> pd.DataFrame:
    """Items as a frame whose nested columns hold plain lists of dicts (arrow's own
    `to_pylist`, about twice as fast as converting numpy arrays of dicts afterwards)."""
    frame = table.drop_columns([c for c in NESTED if c in table.column_names]).to_pandas()
    for position, name in enumerate(table.column_names):
        if name in NESTED:
            frame.insert(position, name, pd.Series(table.column(name).to_pylist(),
                                                 index=frame.index, dtype=object))
    return frame
