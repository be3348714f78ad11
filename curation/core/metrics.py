"""`metrics/<stage>.json`: a few numbers per stage, what `dvc metrics diff` and `dvc exp
show` compare across commits and experiments. Numbers only, flat, and small: the full
reports stay in `reports/`, the params in `params.yaml`."""

from __future__ import annotations

from typing import Any

Figures = dict[str, int | float | None]


def flat(figures: dict[str, Any]) -> Figures:
    """Only the numbers (bools and text left out), so every metric column compares."""
    return {k: v for k, v in figures.items()
            if v is None or (isinstance(v, int | float) and not isinstance(v, bool))}
