"""Progress bars that also reach logs: on a terminal a live bar, elsewhere (dvc, CI, a log
file) a line every `LOG_INTERVAL` seconds."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TextIO

from tqdm import tqdm

LOG_INTERVAL = 10.0


class _Lines:
    """A stream for tqdm off a terminal: each redraw (tqdm starts it with a carriage
    return) becomes a line of its own, and the blank redraw that clears a bar is dropped,
    so a log shows one readable line per interval."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> None:
        for part in text.split("\r"):
            if part.strip():
                self.stream.write(part.rstrip() + "\n")

    def flush(self) -> None:
        self.stream.flush()


def bar(total: int | None, desc: str, unit: str = " rows", iterable: Iterable | None = None
        ) -> tqdm:
    """A tqdm bar on stderr: live (and cleared when done) on a terminal; elsewhere, once
    work has taken an interval, a line per interval and a last one with the totals (work
    that is quick, or fails quickly, writes no line). With `iterable`, it counts what it
    yields."""
    live = sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, unit=unit,
                file=sys.stderr if live else _Lines(sys.stderr),
                leave=not live, mininterval=0.1 if live else LOG_INTERVAL, ascii=not live,
                delay=0 if live else LOG_INTERVAL, disable=total == 0)
