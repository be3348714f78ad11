"""Progress bars that also reach logs: on a terminal a live bar, elsewhere (dvc, CI, a log
file) a line every `LOG_INTERVAL` seconds."""

from __future__ import annotations

import sys

from tqdm import tqdm

LOG_INTERVAL = 10.0


def bar(total: int | None, desc: str, unit: str = " rows") -> tqdm:
    """A tqdm bar on stderr: live on a terminal, a line per interval elsewhere."""
    live = sys.stderr.isatty()
    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=live,
                mininterval=0.1 if live else LOG_INTERVAL, ascii=not live,
                disable=total == 0)
