"""The package's modules import one way: no module reaches itself through its imports.

A circle works only while every import in it stays inside a function, and it ties the modules together so neither
can be read, tested or moved alone. Imports inside functions count, since they are where such circles hide.
"""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).parents[1] / 'aiida_wyckoffdiff'


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix('').parts
    return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """The package modules ``path`` imports, at module level or inside functions."""
    name = _module_name(path)
    package = name if path.stem == '__init__' else name.rpartition('.')[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                anchor = package.rsplit('.', node.level - 1)[0] if node.level > 1 else package
                base = f'{anchor}.{base}' if base else anchor
            # ``from .x import y`` imports the module x.y where y is a module, otherwise the name y from x.
            found |= {f'{base}.{alias.name}' if f'{base}.{alias.name}' in modules else base for alias in node.names}
    return {module for module in found if module in modules and module != name}


def import_graph() -> dict[str, set[str]]:
    """Module -> the package modules it imports."""
    paths = sorted(PACKAGE.rglob('*.py'))
    modules = {_module_name(path) for path in paths}
    return {_module_name(path): _imports(path, modules) for path in paths}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of imports as ``[a, b, ..., a]``, or ``None`` (depth-first search)."""
    state: dict[str, str] = {}  # 'open' while on the stack, 'done' after
    stack: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = 'open'
        stack.append(module)
        for imported in sorted(graph[module]):
            if state.get(imported) == 'open':
                return stack[stack.index(imported):] + [imported]
            if imported not in state and (cycle := visit(imported)):
                return cycle
        stack.pop()
        state[module] = 'done'
        return None

    for module in sorted(graph):
        if module not in state and (cycle := visit(module)):
            return cycle
    return None


def test_graph_sees_relative_and_function_level_imports() -> None:
    graph = import_graph()
    assert 'aiida_wyckoffdiff.references' in graph['aiida_wyckoffdiff.hull']  # from .references import ...
    assert 'aiida_wyckoffdiff.symmetry' in graph['aiida_wyckoffdiff.hull']  # inside a function
    assert 'aiida_wyckoffdiff.cli.relax' in graph['aiida_wyckoffdiff.cli']  # from . import relax
    assert find_cycle({'a': {'b'}, 'b': {'c'}, 'c': {'a'}}) == ['a', 'b', 'c', 'a']


def test_no_module_imports_in_a_circle() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, 'import circle: ' + ' -> '.join(cycle or [])
