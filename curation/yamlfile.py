"""YAML loading that remembers the line of every key, so config errors can name a row."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from curation.errors import CurationError


class YamlFile:
    """A parsed YAML mapping plus the line (1-based) where each dotted key path starts."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            self.data: Any = yaml.safe_load(text)
        except FileNotFoundError:
            raise CurationError("file not found", file=self.path) from None
        except UnicodeDecodeError as exc:
            raise CurationError(f"not valid UTF-8 at byte {exc.start}", file=self.path) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            row = mark.line + 1 if mark else None
            raise CurationError(f"invalid YAML: {getattr(exc, 'problem', exc)}",
                                file=self.path, row=row) from None
        self.lines: dict[str, int] = {}
        if node is not None:
            self._index(node, "")

    def _index(self, node: yaml.Node, prefix: str) -> None:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                path = f"{prefix}.{key.value}" if prefix else str(key.value)
                self.lines[path] = key.start_mark.line + 1
                self._index(value, path)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                path = f"{prefix}[{i}]"
                self.lines[path] = item.start_mark.line + 1
                self._index(item, path)

    def error(self, field: str, message: str) -> CurationError:
        """An error located at `field` (a dotted key path) in this file."""
        key = field
        row = self.lines.get(key)
        while row is None and "." in key:
            key = key.rsplit(".", 1)[0]
            row = self.lines.get(key)
        return CurationError(message, file=self.path, row=row, field=field)
