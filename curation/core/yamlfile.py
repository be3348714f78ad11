"""YAML loading that remembers the line of every key and refuses a key written twice, so
config errors can name a line and a repeated key never silently wins."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from curation.core.errors import CurationError

MAX_VALUES = 100_000  # a config file is a page or two; aliases of aliases can hold billions


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many values a node holds once its aliases are expanded (each node counted once
    per place it appears), computed once per node."""
    if id(node) not in sizes:
        sizes[id(node)] = 1  # a node inside itself is counted once, not forever
        children = (node.value if isinstance(node, yaml.SequenceNode) else
                    [v for pair in node.value for v in pair]
                    if isinstance(node, yaml.MappingNode) else [])
        sizes[id(node)] = 1 + sum(_expanded_size(child, sizes) for child in children)
    return sizes[id(node)]


class YamlFile:
    """A parsed YAML document plus the line (1-based) where each dotted key path starts."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        try:
            text = Path(path).read_text(encoding="utf-8")
            node = yaml.compose(text, Loader=yaml.SafeLoader)
            size = _expanded_size(node, {}) if node is not None else 0
            self.data: Any = yaml.safe_load(text) if size <= MAX_VALUES else None
        except (FileNotFoundError, IsADirectoryError):
            raise CurationError("file not found", file=self.path) from None
        except UnicodeDecodeError as exc:
            raise CurationError(f"not valid UTF-8 at byte {exc.start}", file=self.path) from None
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            row = mark.line + 1 if mark else None
            raise CurationError(f"invalid YAML: {getattr(exc, 'problem', exc)}",
                                file=self.path, line=row) from None
        except (ValueError, RecursionError) as exc:  # a 5,000-digit number, 3,000 nested [
            raise CurationError(f"unreadable YAML: {exc or 'nested too deeply'}",
                                file=self.path) from None
        if size > MAX_VALUES:
            raise CurationError(f"holds more than {MAX_VALUES:,} values once its aliases "
                                "(*name) are expanded; is it a config file?", file=self.path)
        self.lines: dict[str, int] = {}
        self._seen: set[int] = set()
        if node is not None:
            self._index(node, "")

    def _index(self, node: yaml.Node, prefix: str) -> None:
        """Record each key's line; a key written twice in one mapping is an error (YAML
        loaders silently keep the last one). An alias is indexed where its anchor is, once:
        an alias to itself, or aliases of aliases, would otherwise never end."""
        if id(node) in self._seen:
            return
        self._seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                path = f"{prefix}.{key.value}" if prefix else str(key.value)
                if path in self.lines:
                    raise CurationError(f"key written twice (first on line {self.lines[path]})",
                                        file=self.path, line=key.start_mark.line + 1,
                                        field=path)
                self.lines[path] = key.start_mark.line + 1
                self._index(value, path)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                path = f"{prefix}[{i}]"
                self.lines[path] = item.start_mark.line + 1
                self._index(item, path)

    def line_of(self, field: str) -> int | None:
        """The line of `field`, else of its nearest enclosing key that the file has."""
        key = field
        row = self.lines.get(key)
        while row is None and ("." in key or "[" in key):
            key = key[:max(key.rfind("."), key.rfind("["))]
            row = self.lines.get(key)
        return row

    def error(self, field: str, message: str) -> CurationError:
        """An error located at `field` (a dotted key path) in this file."""
        return CurationError(message, file=self.path, line=self.line_of(field), field=field)
