"""The engine's shape (issue: an engine you can read from its folders): no import cycles, even
through imports made inside functions; no source file over 500 lines; one home for the version."""

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MAX_LINES = 500


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]) -> set[str]:
    """Engine modules a file imports anywhere (top level or inside functions)."""
    out = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for n in names:
            while n and n not in modules:
                n = n.rpartition(".")[0]
            if n and n != "engine":
                out.add(n)
    return out


def engine_graph() -> dict[str, set[str]]:
    """Module → engine modules it imports. Importing ``a.b.c`` from outside the package ``a.b``
    also runs ``a.b``'s ``__init__``: that edge is added, so a cycle through a package's
    ``__init__`` is seen too."""
    files = {_module_name(p): p for p in (ROOT / "engine").rglob("*.py")}
    mods = set(files)
    graph = {}
    for m, p in files.items():
        deps = _imports(p, mods) - {m}
        own = m if p.name == "__init__.py" else m.rpartition(".")[0]
        for d in list(deps):
            parent = d.rpartition(".")[0]
            while parent and parent != "engine" and not (own == parent or own.startswith(parent + ".")):
                deps.add(parent)
                parent = parent.rpartition(".")[0]
        graph[m] = deps
    return graph


def test_no_import_cycle_in_the_engine():
    graph = engine_graph()
    state: dict[str, int] = {}
    cycles = []

    def visit(m, path):
        state[m] = 1
        for n in sorted(graph.get(m, ())):
            if n.startswith(m + "."):  # a package importing its own modules is not a cycle
                continue
            if state.get(n) == 1:
                cycles.append(path[path.index(n):] + [n] if n in path else [m, n])
            elif state.get(n) is None:
                visit(n, path + [n])
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m, [m])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_the_walk_sees_imports_inside_functions(tmp_path):
    """The check above would be empty if it missed lazy imports (the engine's usual kind)."""
    graph = engine_graph()
    assert "engine.report.maps" in graph["engine.report.outputs"]  # imported inside a function
    # importing engine.pruning.criteria.activation runs the criteria package's __init__ first
    assert "engine.pruning.criteria" in graph["engine.pruning.sweep"]


@pytest.mark.parametrize("folder", ["engine", "guiapp"])
def test_no_source_file_over_500_lines(folder):
    long = {str(p.relative_to(ROOT)): n for p in (ROOT / folder).rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, f"over {MAX_LINES} lines: {long}"


def test_the_version_comes_from_the_package_metadata(capsys):
    import tomllib

    from engine.cli.main import main
    from engine.core.version import version

    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert version() == declared
    with pytest.raises(SystemExit):
        main(["--version"])
    assert re.fullmatch(rf"prunelab {re.escape(declared)}\s*", capsys.readouterr().out)
