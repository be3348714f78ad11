"""`distinct` is `np.unique` by another road; the first of equal keys and the repeated
keys agree with a plain Python loop."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from curation.core.arrays import distinct, first_positions, repeated_values


@given(st.lists(st.integers(0, 2**64 - 1)), st.sampled_from([np.uint64, np.int64, np.uint32]))
def test_distinct_equals_numpy_unique(values: list[int], dtype: type) -> None:
    array = np.array(values, dtype=np.uint64).astype(dtype)
    got = distinct(array)
    assert got.dtype == array.dtype
    assert np.array_equal(got, np.unique(array))


@given(st.lists(st.integers(0, 6)))
def test_first_positions_and_repeated_values_equal_a_loop(values: list[int]) -> None:
    keys = np.array(values, dtype=np.uint64)
    seen: dict[int, int] = {}
    expected = [seen.setdefault(v, i) for i, v in enumerate(values)]
    assert first_positions(keys).tolist() == expected
    assert repeated_values(keys).tolist() == sorted(v for v in set(values)
                                                    if values.count(v) > 1)
