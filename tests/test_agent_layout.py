"""The agent's modules import one another one way only, and the plugin
selection modules stand below the agent and the server. Every import counts:
module level, inside functions and under TYPE_CHECKING."""

from __future__ import annotations

import ast
from pathlib import Path

import fleetcore

ROOT = Path(fleetcore.__file__).parent


def _modules() -> dict[str, Path]:
    out = {}
    for path in ROOT.rglob("*.py"):
        parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _imports(path: Path, known: set[str]) -> set[str]:
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" for alias in node.names] + [node.module]
        else:
            continue
        for name in names:
            if name in known:
                found.add(name)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(path, known) - {name} for name, path in modules.items()}


def _reaches(graph: dict[str, set[str]], start: str) -> set[str]:
    seen: set[str] = set()
    todo = list(graph[start])
    while todo:
        name = todo.pop()
        if name not in seen:
            seen.add(name)
            todo.extend(graph.get(name, ()))
    return seen


def test_no_agent_module_takes_part_in_an_import_cycle() -> None:
    graph = _graph()
    agent = [m for m in graph if m.startswith("fleetcore.agent.")]
    cyclic = sorted(m for m in agent if m in _reaches(graph, m))
    assert cyclic == []


def test_plugin_selection_does_not_import_the_agent_or_the_server() -> None:
    graph = _graph()
    for kind in ("fetch", "activate", "secrets", "rollout"):
        direct = graph[f"fleetcore.{kind}.select"]
        assert not [m for m in direct if m.startswith(("fleetcore.agent", "fleetcore.server"))]
