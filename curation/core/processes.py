"""Is a recorded process still running: the local server's processes, the owner of a
spill folder. A pid alone can be reused, so the kernel's start time tells ours apart."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (tells a reused pid from ours); None off Linux."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[19] if len(fields) > 19 else None


def alive(pid: int | None, started: str | None = None, reap: bool = True) -> bool:
    """True when ``pid`` runs (not a zombie) and, if given, started at ``started``;
    ``reap``: first reap it if it is our own exited child (the server's processes)."""
    if not pid:
        return False
    if reap:
        with contextlib.suppress(ChildProcessError, OSError):
            os.waitpid(pid, os.WNOHANG)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # another user's
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True  # no /proc: trust kill(0)
    if stat[stat.rindex(")") + 2 :].startswith("Z"):
        return False
    return started is None or start_time(pid) == started
