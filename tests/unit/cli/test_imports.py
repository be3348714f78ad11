"""`curate --help` (and the start of every command) imports no heavy library: they load
where a command uses them (the import-time target of `curate --help` under 0.5 s is
measured, not asserted: see the closing figures of issue 16)."""

from __future__ import annotations

import subprocess
import sys

from conftest import CURATE

HEAVY = ("pandas", "pyarrow", "pydantic", "numpy", "argilla", "sklearn", "torch",
         "sentence_transformers", "datasets", "requests", "spacy", "presidio_analyzer")


def test_the_command_line_imports_no_heavy_library() -> None:
    code = ("import sys, curation.cli; "
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True).stdout.split()
    assert loaded == []


def test_help_lists_every_command_without_importing_them() -> None:
    result = subprocess.run([str(CURATE), "--help"], capture_output=True, text=True)
    assert result.returncode == 0
    for command in ("pull", "normalize", "dedup", "families", "suggest", "label", "redact",
                    "split", "ledger", "release", "annotate", "argilla"):
        assert f"  {command} " in result.stdout, command
