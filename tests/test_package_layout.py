"""The package's layout stays as the README's "Layout" describes it, checked from the source.

* no import cycle between dasr's modules (imports inside functions count too: hiding a cycle in
  a function is still a cycle);
* no library module imports ``dasr.cli`` (the command line sits on top of the library);
* no module over :data:`MAX_LINES` lines.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "dasr"
MAX_LINES = 550


def module_name(path: Path, src: Path) -> str:
    parts = list(path.relative_to(src).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def modules(root: Path = PACKAGE) -> dict[str, Path]:
    return {module_name(p, root.parent): p for p in sorted(root.rglob("*.py"))}


def imported_modules(path: Path, name: str, known: set[str]) -> set[str]:
    """The dasr modules ``path`` imports (at any depth of its code)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                prefix = ".".join(base + ([node.module] if node.module else []))
            else:
                prefix = node.module or ""
            targets = [f"{prefix}.{a.name}" if f"{prefix}.{a.name}" in known else prefix for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:  # `import dasr.x.y` where y is a name
                target = target.rpartition(".")[0]
            if target.startswith("dasr") and target != name:
                found.add(target)
    return found


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    mods = modules(root)
    return {name: imported_modules(path, name, set(mods)) for name, path in mods.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    counter = [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle():
    assert cycles(import_graph()) == []


def test_no_library_module_imports_the_cli():
    offenders = sorted(name for name, deps in import_graph().items()
                       if not name.startswith("dasr.cli") and any(d.startswith("dasr.cli") for d in deps))
    assert offenders == []


def test_no_module_is_too_long():
    long = {name: n for name, path in modules().items()
            if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert long == {}


# --------------------------------------------------------------- the checks themselves can fail
def write_package(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        p = root / "dasr" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return root / "dasr"


@pytest.mark.parametrize("a_imports", ["from dasr.b import f", "def g():\n    from dasr.b import f\n",
                                       "import dasr.b", "from . import b"])
def test_a_cycle_is_found_even_inside_a_function(tmp_path, a_imports):
    pkg = write_package(tmp_path, {"__init__.py": "", "a.py": a_imports, "b.py": "from dasr.a import x\n",
                                   "c.py": "from dasr.a import x\n"})
    assert cycles(import_graph(pkg)) == [["dasr.a", "dasr.b"]]


def test_a_library_import_of_the_cli_is_found(tmp_path):
    pkg = write_package(tmp_path, {"__init__.py": "", "cli/__init__.py": "", "cli/parser.py": "",
                                   "lib.py": "from dasr.cli.parser import x\n"})
    assert import_graph(pkg)["dasr.lib"] == {"dasr.cli.parser"}
