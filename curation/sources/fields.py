"""Field paths: how a source's field map reaches a value inside a record.

A path is a key (`objective`), a dotted path with list indexes (`metadata.category`,
`turns[0].message`), or, with a leading `/`, a path into the file's header (the top-level
values of a json or yaml file beside its records, e.g. `/harm_categories`). A key that
exists verbatim (even one holding a dot) wins over its reading as a path.
"""

from __future__ import annotations

import re
from typing import Any

_TOKEN = re.compile(r"([^.\[\]]+)|\[(\d+)\]")
_PATH = re.compile(r"^/?([^.\[\]]+|\[\d+\])(\.[^.\[\]]+|\[\d+\])*$")
MISSING = object()  # a path that leads nowhere (as opposed to a null value)


def is_valid(path: str) -> bool:
    return bool(_PATH.match(path))


def lookup(values: dict[str, Any], header: dict[str, Any] | None, path: str) -> Any:
    """The value at `path`, or MISSING."""
    node: Any = values
    if path.startswith("/"):
        node, path = header or {}, path[1:]
    if isinstance(node, dict) and path in node:
        return node[path]
    for key, index in _TOKEN.findall(path):
        if index:
            if not isinstance(node, list) or int(index) >= len(node):
                return MISSING
            node = node[int(index)]
        elif isinstance(node, dict) and key in node:
            node = node[key]
        else:
            return MISSING
    return node
