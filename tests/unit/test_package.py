"""Importing the package: arrow allocates from the system allocator, which hands freed
blocks back (mimalloc kept them, and stage peaks stacked them), unless the user chose."""

from __future__ import annotations

import os
import subprocess
import sys

POOL = "import pyarrow as pa; print(pa.default_memory_pool().backend_name)"


def backend(first: str, env: dict[str, str]) -> str:
    return subprocess.run([sys.executable, "-c", f"import {first}; {POOL}"],
                          capture_output=True, text=True, check=True, env=env).stdout.strip()


def test_arrow_gives_freed_memory_back_unless_the_user_chose_a_pool() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    assert backend("curation.cli", env) == "system"
    assert backend("pandas, curation", env) == "system"  # pyarrow already loaded
    assert backend("pandas", env) == "mimalloc"  # arrow's own default, without us
    chosen = {**env, "ARROW_DEFAULT_MEMORY_POOL": "mimalloc"}
    assert backend("curation", chosen) == backend("pandas, curation", chosen) == "mimalloc"
