"""The arrow forms of the item helpers equal the Python ones."""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
from hypothesis import given, settings
from hypothesis import strategies as st

from curation.core.items import MESSAGE, to_arrow, user_text, user_texts, with_first_response

JUDGMENTS = pa.struct([("is_refusal", pa.bool_())])

turn = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system"]),
                              "content": st.text(max_size=20)})
conversations = st.lists(st.lists(turn, max_size=5), max_size=12)


@settings(max_examples=80, deadline=None)
@given(conversations, st.integers(0, 4), st.integers(0, 12))
def test_user_texts_equal_user_text_over_slices(messages: list, start: int, length: int) -> None:
    column = pa.array(messages, pa.list_(MESSAGE)).slice(start, length)
    expected = [user_text(m) for m in messages[start:start + length]]
    assert user_texts(column).to_pylist() == expected
    assert user_texts(pa.chunked_array([column], column.type)).to_pylist() == expected


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.text(max_size=10),
                          st.lists(st.text(max_size=10), max_size=3)), max_size=10),
       st.integers(0, 3))
def test_first_response_is_appended_where_there_is_one(rows: list, start: int) -> None:
    responses = pa.array([[{"text": t, "model": "m"} for t in answers] for _, answers in rows],
                         pa.list_(pa.struct([("text", pa.string()), ("model", pa.string())])))
    texts = pa.array([text for text, _ in rows], pa.string())
    got = with_first_response(texts.slice(start), responses.slice(start)).to_pylist()
    assert got == [f"{text}\n{answers[0]}" if answers else text
                   for text, answers in rows[start:]]


def test_columns_all_null_in_a_batch_keep_the_types_of_the_file() -> None:
    frame = pd.DataFrame({"id": ["a"], "family_key": pd.Series([None], dtype=object)})
    assert to_arrow(frame, JUDGMENTS).schema.field("family_key").type == pa.null()
    like = pa.schema([("id", pa.large_string()), ("family_key", pa.large_string())])
    typed = to_arrow(frame, JUDGMENTS, like=like)
    assert typed.schema == like and typed["family_key"].to_pylist() == [None]
