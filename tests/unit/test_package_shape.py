"""The package's shape, read from its source: no circle of imports, no function over 60 lines."""

import ast
from pathlib import Path

import harness

PACKAGE = Path(harness.__file__).parent
MAX_LINES = 60


def _modules() -> dict[str, tuple[Path, ast.Module]]:
    """Each module's name, its path from the repository root and its syntax tree."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent)
        parts = relative.with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = (relative, ast.parse(path.read_text(), str(path)))
    return found


def _top_level_imports(tree: ast.Module) -> list[str]:
    """What the module imports when it loads: its body's imports, in any `if` or `try` there,
    but not in functions (run later) nor under `if TYPE_CHECKING` (never run)."""
    names = []
    pending = list(tree.body)
    while pending:
        node = pending.pop()
        if isinstance(node, ast.Import):
            names += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names += [node.module, *(f"{node.module}.{a.name}" for a in node.names)]
        elif isinstance(node, ast.If) and "TYPE_CHECKING" not in ast.unparse(node.test):
            pending += node.body + node.orelse
        elif isinstance(node, ast.Try):
            pending += node.body + node.orelse + node.finalbody + [s for h in node.handlers for s in h.body]
    return names


def _import_graph() -> dict[str, set[str]]:
    modules = _modules()
    graph = {}
    for name, (_, tree) in modules.items():
        # `from harness.x import y` imports harness.x.y where y is a module, else harness.x
        imported = {n if n in modules else n.rpartition(".")[0] for n in _top_level_imports(tree)}
        graph[name] = {n for n in imported if n in modules and n != name}
    return graph


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One circle of imports, as the modules along it, or None."""
    state: dict[str, str] = {}
    path: list[str] = []

    def visit(module: str) -> list[str] | None:
        state[module] = "open"
        path.append(module)
        for dependency in sorted(graph[module]):
            if state.get(dependency) == "open":
                return [*path[path.index(dependency) :], dependency]
            if dependency not in state and (found := visit(dependency)):
                return found
        state[module] = "done"
        path.pop()
        return None

    for module in sorted(graph):
        if module not in state and (found := visit(module)):
            return found
    return None


def test_no_circle_of_imports_among_the_harness_modules():
    cycle = _cycle(_import_graph())
    assert cycle is None, "a circle of imports: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_function_over_60_lines():
    long = {
        f"{path}:{node.name}"
        for path, tree in _modules().values()
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
        and node.end_lineno - node.lineno + 1 > MAX_LINES
    }
    assert long == set()
