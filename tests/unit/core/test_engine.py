"""The engine's windows on Ray: a fixed number of batches, or fewer when the caller says
what it keeps for them is enough."""

from __future__ import annotations

import subprocess
import sys
import textwrap

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


def test_a_ray_cluster_that_cannot_be_reached_is_one_located_line() -> None:
    """Without ray[client], Ray refuses a ray:// address at once (a fresh interpreter:
    no Ray already initialised by other tests)."""
    code = textwrap.dedent("""
        import pyarrow as pa
        from curation.core.engine import Engine
        from curation.core.errors import CurationError
        try:
            list(Engine("ray", "ray://127.0.0.1:1").map(lambda t: t, [pa.table({"a": [1]})]))
        except CurationError as exc:
            print(exc.field, "|", exc)
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=300)
    field, message = result.stdout.strip().split(" | ")
    assert field == "engine.address"
    assert message.startswith("field 'engine.address': no Ray cluster at 'ray://127.0.0.1:1': ")
    assert "\n" not in message
