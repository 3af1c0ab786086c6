"""docs/code-map.md matches the tree; source files stay short; the packages import without a cycle."""

from __future__ import annotations

import ast
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("cluster", "actors", "policies")
SIZE_CHECKED = (*PACKAGES, "benchmarks")
MAX_LINES = 500
CODE_MAP = REPO / "docs" / "code-map.md"


def code_map_paths() -> list[str]:
    """The first `path` of every list item in docs/code-map.md (one item per folder or file)."""
    return [m.group(1) for m in re.finditer(r"^- `([^`]+)`", CODE_MAP.read_text(), re.M)]


def test_every_path_in_the_code_map_exists():
    paths = code_map_paths()
    assert len(paths) > 20, "docs/code-map.md lists (almost) nothing"
    missing = [p for p in paths if not (REPO / p).exists()]
    assert not missing, f"docs/code-map.md lists paths that do not exist: {missing}"


def test_the_code_map_names_every_package_module():
    listed = set(code_map_paths())
    modules = [path.relative_to(REPO).as_posix() for package in PACKAGES for path in (REPO / package).rglob("*.py")]
    unlisted = [m for m in modules
                if m not in listed and not (m.endswith("__init__.py") and m[: -len("__init__.py")] in listed)]
    assert not unlisted, f"modules missing from docs/code-map.md: {sorted(unlisted)}"


def test_no_source_file_is_longer_than_the_limit():
    long = {}
    for folder in SIZE_CHECKED:
        for path in (REPO / folder).rglob("*.py"):
            lines = len(path.read_text().splitlines())
            if lines > MAX_LINES:
                long[path.relative_to(REPO).as_posix()] = lines
    assert not long, f"source files over {MAX_LINES} lines: {long}"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def import_graph() -> dict[str, set[str]]:
    """Module -> the project modules its `import X` / `from X import ...` statements name.

    Every import statement counts, also those inside functions: a cycle that only closes at call
    time is still a cycle in the design. `from package import name` counts as an edge to
    `package.name` when that is a module, else to the package.
    """
    modules = {module_name(p): p for package in PACKAGES for p in (REPO / package).rglob("*.py")}
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text())):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets = [f"{node.module}.{a.name}" if f"{node.module}.{a.name}" in modules else node.module
                           for a in node.names]
            graph[name] |= {t for t in targets if t in modules and t != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None; a plain depth-first search."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for child in sorted(graph[node]):
            if state.get(child) == 1:
                return path[path.index(child):] + [child]
            if child not in state and (cycle := visit(child)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_find_cycle_finds_a_cycle_and_accepts_a_tree():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_package_import_graph_has_no_cycle():
    graph = import_graph()
    assert graph["actors.weight_sync.broadcast"] >= {"actors.weight_sync.base"}  # the graph sees real edges
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_code_and_docs_point_only_inside_the_repository():
    """Citations go to docs/ (which must exist), never to files outside the repository."""
    outside = re.compile(r"papers\.md|shared contracts|/work/|\.\./shared|environment\.md")
    cited = re.compile(r"docs/[\w-]+\.md")
    stray, missing = [], []
    files = [REPO / "README.md", *(REPO / "docs").glob("*.md"),
             *(path for folder in (*SIZE_CHECKED, "tests", "configs") for path in (REPO / folder).rglob("*.py")),
             *(REPO / "configs").glob("*.yaml")]
    for path in files:
        if path.name == "test_code_map.py":
            continue
        text = path.read_text()
        stray += [f"{path.relative_to(REPO)}: {m.group(0)}" for m in outside.finditer(text)]
        missing += [f"{path.relative_to(REPO)}: {m.group(0)}" for m in cited.finditer(text) if not (REPO / m.group(0)).exists()]
    assert len(list((REPO / "docs").glob("*.md"))) >= 5
    assert not stray, f"references outside the repository: {stray}"
    assert not missing, f"citations of docs that do not exist: {missing}"


def test_paths_named_in_readme_and_docs_exist():
    """A file moved or renamed must not leave README or docs/ pointing at where it was."""
    named = re.compile(r"\b(?:actors|cluster|policies|tests|benchmarks|configs)/[\w/]+\.(?:py|yaml)\b")
    stale = [f"{path.relative_to(REPO)}: {m.group(0)}"
             for path in [REPO / "README.md", *(REPO / "docs").glob("*.md")]
             for m in named.finditer(path.read_text()) if not (REPO / m.group(0)).exists()]
    assert not stale, f"paths that do not exist: {stale}"
