"""`curate` ends a SIGTERM as it ends Ctrl-C: one line, a conventional exit code, and no
temporary file left behind."""

from __future__ import annotations

import signal
from pathlib import Path

from conftest import sigterm_while_spilling


def test_sigterm_removes_spill_files_and_exits_143(tmp_path: Path) -> None:
    code, stderr, spilled = sigterm_while_spilling(tmp_path)
    assert spilled
    assert code == 128 + signal.SIGTERM
    assert stderr.strip() == "terminated"
    assert list(tmp_path.iterdir()) == []
