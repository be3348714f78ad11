"""Importing the package: arrow allocates from the system allocator, which hands freed
blocks back (mimalloc kept them, and stage peaks stacked them), unless the user chose."""

from __future__ import annotations

import os
import subprocess
import sys

CODE = "import curation, pyarrow as pa; print(pa.default_memory_pool().backend_name)"


def backend(env: dict[str, str]) -> str:
    return subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True,
                          check=True, env=env).stdout.strip()


def test_arrow_gives_freed_memory_back_unless_the_user_chose_a_pool() -> None:
    env = {k: v for k, v in os.environ.items() if k != "ARROW_DEFAULT_MEMORY_POOL"}
    assert backend(env) == "system"
    assert backend({**env, "ARROW_DEFAULT_MEMORY_POOL": "mimalloc"}) == "mimalloc"
