"""Progress off a terminal (dvc, CI, a log file): whole lines, no carriage returns."""

from __future__ import annotations

import io
import sys

import pytest

from curation.core import progress


def test_progress_in_a_log_is_one_line_per_update(monkeypatch: pytest.MonkeyPatch) -> None:
    log = io.StringIO()
    monkeypatch.setattr(sys, "stderr", log)
    monkeypatch.setattr(progress, "LOG_INTERVAL", 0.0)
    with progress.bar(3, "redact: personal data", " texts") as shown:
        for _ in range(3):
            shown.update(1)
    lines = log.getvalue().splitlines()
    assert "\r" not in log.getvalue()
    assert len(lines) >= 2 and all(line.startswith("redact: personal data:") for line in lines)
    assert "3/3" in lines[-1]
