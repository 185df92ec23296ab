"""ftlab's import graph: no cycles, and every import points down the pipeline stages (core and config < data < model <
train < eval < runs < report and export < the commands in ftlab/*.py). Read with ast, imports inside functions
included, so the test loads none of ftlab's dependencies and takes a fraction of a second."""

import ast
import itertools
from pathlib import Path

from ftlab.core.files import PROJECT_ROOT

STAGES = {"core": 0, "config": 0, "data": 1, "model": 2, "train": 3, "eval": 4, "runs": 5, "report": 6, "export": 6}
COMMANDS = 7  # ftlab/*.py: what a user runs
NAMES = {
    0: "core/config",
    1: "data",
    2: "model",
    3: "train",
    4: "eval",
    5: "runs",
    6: "report/export",
    COMMANDS: "commands",
}


def modules(package: Path = PROJECT_ROOT / "ftlab") -> dict[str, Path]:
    """Every module of the package by dotted name, a subpackage by its __init__.py."""
    found = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def imports(name: str, source: str, known) -> dict[str, int]:
    """The known modules that module `name` imports, anywhere in its source, each with its first line. `from
    ftlab.pkg import module` imports that module; `from ftlab.pkg import function` imports the package."""
    package = name if known[name].name == "__init__.py" else name.rpartition(".")[0]  # where relative ones start
    found = {}
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0]
                base = f"{anchor}.{node.module}" if node.module else anchor
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        for target in targets:
            if target in known:
                found.setdefault(target, node.lineno)
    return found


def import_graph() -> tuple[dict[str, dict[str, int]], dict[str, Path]]:
    known = modules()
    return {name: imports(name, path.read_text(), known) for name, path in known.items()}, known


def stage(name: str) -> int:
    """A module's place in the pipeline. The package's own __init__ runs before any of its modules: the lowest."""
    parts = name.split(".")
    if len(parts) == 1:
        return 0
    if len(parts) == 2 and not (PROJECT_ROOT / "ftlab" / parts[1]).is_dir():
        return COMMANDS
    assert parts[1] in STAGES, f"ftlab/{parts[1]}/ has no place in the stage order of tests/test_architecture.py"
    return STAGES[parts[1]]


def find_cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """One cycle for each back edge of a depth-first walk: empty exactly when the graph has none."""
    cycles, state, path = [], {}, []

    def visit(node):
        state[node] = "open"
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                cycles.append([*path[path.index(target) :], target])
            elif target not in state:
                visit(target)
        path.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return cycles


def test_the_import_graph_has_no_cycle():
    graph, _ = import_graph()
    cycles = [
        " -> ".join(f"{a} (line {graph[a][b]})" for a, b in itertools.pairwise(c)) + f" -> {c[-1]}"
        for c in find_cycles(graph)
    ]
    assert not cycles, "import cycles:\n" + "\n".join(cycles)


def test_imports_point_down_the_pipeline_stages():
    graph, known = import_graph()
    upward = [
        f"{known[a].relative_to(PROJECT_ROOT)}:{line}: {a} ({NAMES[stage(a)]}) imports {b} ({NAMES[stage(b)]})"
        for a, targets in graph.items()
        for b, line in targets.items()
        if stage(b) > stage(a)
    ]
    assert not upward, "imports from a later stage:\n" + "\n".join(upward)


def test_the_graph_sees_every_kind_of_import():
    """The negative control: imports inside functions, of a module through its package, relative ones and plain
    `import a.b` all count (a parser that missed one would pass the tests above on any code), and a cycle is found."""
    known = {
        name: Path(name.replace(".", "/") + ".py")
        for name in [
            "ftlab",
            "ftlab.data.clean",
            "ftlab.data.load",
            "ftlab.core.files",
            "ftlab.model.load",
            "ftlab.train.x",
        ]
    }
    source = (
        "from ftlab.data import clean\nimport ftlab.core.files\nimport torch\n"
        "def f():\n    from ftlab.model.load import load_base\n    from ..data.load import prepare\n"
    )
    assert imports("ftlab.train.x", source, known) == {
        "ftlab.data.clean": 1,
        "ftlab.core.files": 2,
        "ftlab.model.load": 5,
        "ftlab.data.load": 6,
    }
    assert find_cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}}) == [["a", "b", "c", "a"]]
    assert find_cycles({"a": {"b": 1}, "b": {}, "c": {"a": 1, "b": 1}}) == []
