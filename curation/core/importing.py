"""Importing a library without the optional packages it would pull in.

spaCy (through thinc) and presidio import torch and transformers whenever they are
installed, though an English CPU pipeline uses neither: in each redact worker that is
325 MB of memory and 3 s of import, measured here.
"""

from __future__ import annotations

import importlib.abc
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from importlib.machinery import ModuleSpec


class _Absent(importlib.abc.MetaPathFinder):
    """Finds `names` missing, in one thread, unless they are imported already."""

    def __init__(self, names: Sequence[str]) -> None:
        self.names, self.thread = frozenset(names), threading.get_ident()

    def find_spec(self, fullname: str, path: Sequence[str] | None,
                  target: object = None) -> ModuleSpec | None:
        top = fullname.partition(".")[0]
        if (top in self.names and top not in sys.modules
                and threading.get_ident() == self.thread):
            raise ModuleNotFoundError(f"No module named '{fullname}'", name=fullname)
        return None


@contextmanager
def without(*names: str) -> Iterator[None]:
    """Inside: importing the top-level packages `names` fails as if they were not
    installed (in this thread, and unless already imported), so libraries that import
    them optionally go without. Afterwards they import as usual."""
    finder = _Absent(names)
    sys.meta_path.insert(0, finder)
    try:
        yield
    finally:
        sys.meta_path.remove(finder)
