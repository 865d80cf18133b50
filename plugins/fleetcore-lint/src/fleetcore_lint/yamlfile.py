"""YAML read with line numbers: the data, and where each key and item is."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import yaml
from attrs import frozen


class YamlError(Exception):
    """Not valid YAML, at ``line`` (from 1)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


@frozen
class YamlDoc:
    """One YAML document: ``data`` as Python values and its node tree."""

    data: Any
    root: yaml.Node | None

    def line(self, path: Iterable[str | int]) -> int:
        """The line (from 1) of the deepest node along ``path`` (mapping keys
        and sequence indexes) that exists: a missing key points at its parent."""
        node = self.root
        if node is None:
            return 1
        line = node.start_mark.line + 1
        for step in path:
            child: yaml.Node | None = None
            if isinstance(node, yaml.MappingNode):
                for key, value in node.value:
                    if isinstance(key, yaml.ScalarNode) and key.value == str(step):
                        line = key.start_mark.line + 1
                        child = value
                        break
            elif (
                isinstance(node, yaml.SequenceNode)
                and isinstance(step, int)
                and 0 <= step < len(node.value)
            ):
                child = node.value[step]
                line = child.start_mark.line + 1
            if child is None:
                break
            node = child
        return line


def load_all(text: str) -> list[YamlDoc]:
    """Every document of ``text`` (one, or several separated by ``---``);
    raises :class:`YamlError` with the line of the first error."""
    try:
        roots = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
        datas = list(yaml.load_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else 1
        message = ", ".join(str(m) for m in (exc.context, exc.problem) if m)
        raise YamlError(line, message or "not valid YAML") from None
    except yaml.YAMLError as exc:
        raise YamlError(1, str(exc).splitlines()[0]) from None
    return [YamlDoc(d, r) for d, r in zip(datas, roots, strict=True)]


def load(text: str) -> YamlDoc:
    """The first document of ``text`` (an empty one for an empty file)."""
    docs = load_all(text)
    return docs[0] if docs else YamlDoc(None, None)
