"""The engine's windows on Ray: a fixed number of batches, or fewer when the caller says
what it keeps for them is enough."""

from __future__ import annotations

import pyarrow as pa

from curation.core.engine import _windows


def tables(n: int) -> list[pa.Table]:
    return [pa.table({"text": [str(i)]}) for i in range(n)]


def test_windows_hold_a_fixed_number_of_batches_in_order() -> None:
    batches = tables(7)
    windows = list(_windows(iter(batches), 3))
    assert [len(w) for w in windows] == [3, 3, 1]
    assert [b for w in windows for b in w] == batches


def test_a_window_ends_early_when_the_caller_holds_enough() -> None:
    """The caller (redact) counts what it keeps for the batches read so far; once that is
    enough the window runs, and the count starts over as the caller drops what it kept."""
    held: list[int] = []

    def read(n: int):  # noqa: ANN202
        for batch in tables(n):
            held.append(1)
            yield batch

    def full() -> bool:
        return len(held) >= 2

    sizes = []
    for window in _windows(read(7), 64, full):
        sizes.append(len(window))
        held.clear()  # the caller writes what the window's results completed
    assert sizes == [2, 2, 2, 1]
