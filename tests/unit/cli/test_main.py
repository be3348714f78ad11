"""`curate` ends a SIGTERM as it ends Ctrl-C: one line, a conventional exit code, and no
temporary file left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

# A command that spills a table and then waits to be killed, added to the real entry point.
SPILL_AND_WAIT = """
import time, click, pyarrow as pa
from curation.cli import cli, main
from curation.core.tableio import SpillFile

@cli.command()
def spill_and_wait():
    with SpillFile("test") as spill:
        spill.write(pa.table({"a": [1, 2, 3]}))
        print(spill.path, flush=True)
        time.sleep(60)

main()
"""


def test_sigterm_removes_spill_files_and_exits_143(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", SPILL_AND_WAIT, "spill-and-wait"], stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, env={**os.environ, "TMPDIR": str(tmp_path)})
    spill = Path(process.stdout.readline().strip())
    assert spill.is_file() and spill.is_relative_to(tmp_path)
    time.sleep(0.2)  # inside the sleep
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=30)
    assert process.returncode == 128 + signal.SIGTERM
    assert stderr.strip() == "terminated"
    assert list(tmp_path.iterdir()) == []
