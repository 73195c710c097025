"""The package's seams: no private name crosses a package boundary, no import cycle among the
package's modules, and the stages import only earlier stages (docs/architecture.md)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PKG = ROOT / "hashiflex"


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PKG.rglob("*.py"))}


def _resolve(mod: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = mod.split(".") if is_pkg else mod.split(".")[:-1]
    base = base[:len(base) - node.level + 1]
    return ".".join(base + ([node.module] if node.module else []))


def imports(path: Path, mods: dict[str, Path]):
    """(imported module, names) for every import in the file, including imports inside functions."""
    mod = module_name(path) if path.is_relative_to(PKG) else ""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, []
        elif isinstance(node, ast.ImportFrom):
            src = _resolve(mod, path.name == "__init__.py", node)
            for a in node.names:   # `from pkg import submodule` imports the submodule
                sub = f"{src}.{a.name}"
                yield (sub, []) if sub in mods else (src, [a.name])


def package_of(mod: str) -> str:
    """hashiflex.rtl.conv -> hashiflex.rtl; hashiflex.errors -> hashiflex.errors (a one-module stage)."""
    return ".".join(mod.split(".")[:2])


def test_no_private_name_crosses_a_package():
    mods = modules()
    files = list(mods.values()) + sorted((ROOT / "tests").rglob("*.py")) + sorted((ROOT / "benchmarks").rglob("*.py"))
    bad = []
    for path in files:
        here = package_of(module_name(path)) if path.is_relative_to(PKG) else str(path.relative_to(ROOT))
        for src, names in imports(path, mods):
            if not src.startswith("hashiflex") or package_of(src) == here:
                continue
            priv = [n for n in names if n.startswith("_")] + \
                [p for p in src.split(".") if p.startswith("_") and p != "__init__"]
            if priv:
                bad.append(f"{path.relative_to(ROOT)}: {src} {', '.join(priv)}")
    assert not bad, "private names imported across packages:\n" + "\n".join(bad)


def import_graph() -> dict[str, set[str]]:
    mods = modules()
    graph = {m: set() for m in mods}
    for m, path in mods.items():
        for src, _ in imports(path, mods):
            if src in mods and src != m:
                graph[m].add(src)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle (a list of modules, first == last) or None (iterative DFS)."""
    state: dict[str, int] = {}
    for start in sorted(graph):
        if state.get(start):
            continue
        stack = [(start, iter(sorted(graph[start])))]
        path = [start]
        state[start] = 1
        while stack:
            node, it = stack[-1]
            nxt = next(it, None)
            if nxt is None:
                state[node] = 2
                stack.pop()
                path.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                stack.append((nxt, iter(sorted(graph[nxt]))))
                path.append(nxt)
    return None


def test_no_import_cycle_among_modules():
    g = import_graph()
    # a package's __init__ re-exports its modules: an edge into a package's __init__ from its own
    # submodule would be a cycle, and any other cycle is a design error
    cyc = find_cycle(g)
    assert cyc is None, "import cycle: " + " -> ".join(cyc)


def test_find_cycle_finds_one():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


# the flow's order: a stage may import its own package and earlier stages only
STAGES = ["hashiflex.errors", "hashiflex.progress", "hashiflex.cluster", "hashiflex.data", "hashiflex.models", "hashiflex.checkpoint",
          "hashiflex.train", "hashiflex.quant", "hashiflex.ir", "hashiflex.sim", "hashiflex.rtl",
          "hashiflex.finetune", "hashiflex.verify", "hashiflex.synth", "hashiflex.cost", "hashiflex.report", "hashiflex.commands",
          "hashiflex.cli", "hashiflex.__main__", "hashiflex"]


def test_stages_import_only_earlier_stages():
    rank = {s: i for i, s in enumerate(STAGES)}
    bad = []
    for m, deps in import_graph().items():
        pm = package_of(m)
        for d in deps:
            pd = package_of(d)
            if pm != pd and rank.get(pd, -1) > rank.get(pm, len(STAGES)):
                bad.append(f"{m} imports {d}")
    assert not bad, "a stage imports a later stage:\n" + "\n".join(sorted(bad))
