"""`distinct` is `np.unique` by another road."""

from __future__ import annotations

import numpy as np
from hypothesis import given
from hypothesis import strategies as st

from curation.core.arrays import distinct


@given(st.lists(st.integers(0, 2**64 - 1)), st.sampled_from([np.uint64, np.int64, np.uint32]))
def test_distinct_equals_numpy_unique(values: list[int], dtype: type) -> None:
    array = np.array(values, dtype=np.uint64).astype(dtype)
    got = distinct(array)
    assert got.dtype == array.dtype
    assert np.array_equal(got, np.unique(array))
