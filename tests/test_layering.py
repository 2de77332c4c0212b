"""The package's imports follow the data flow: data → semantics → models → train / tune → serve, on a ground floor
(config, storage, runtime) that imports no stage; serving code never imports training code; no import circle
but the backbone registry's (each backbone registers itself, the registry imports the backbones)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "platform" / "llmctr"
GROUND = {"llmctr", "llmctr.config", "llmctr.storage", "llmctr.runtime"}
#: what each room may import besides itself and the ground floor; None: anything (entry points)
ALLOWED = {
    "ground": set(),
    "data": set(),
    "semantics": {"data"},
    "models": {"data", "semantics"},
    "train": {"data", "semantics", "models"},
    "tune": {"data", "semantics", "models", "train"},
    "serve": {"data", "semantics", "models"},
    "cli": None,
    "demo": None,
}
REGISTRY_CIRCLE = "llmctr.models.registry"


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def room(module: str) -> str:
    if module in GROUND:
        return "ground"
    return module.split(".")[1]


def imports(path: Path, known: dict[str, Path]) -> set[str]:
    """Every llmctr module ``path`` imports, at the top or inside a function (``from pkg import sub`` counts as
    an import of ``pkg.sub`` when that is a module)."""
    own = module_name(path)
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "llmctr"}
        elif isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "llmctr":
            for alias in node.names:
                sub = f"{node.module}.{alias.name}"
                out.add(sub if sub in known else node.module)
    return {m for m in out if m in known and m != own}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(path, known) for name, path in known.items()}


def test_every_room_is_classified():
    assert {room(m) for m in modules()} <= set(ALLOWED), "a new top-level room needs its place in ALLOWED"


def test_no_import_runs_against_the_flow():
    against = []
    for module, targets in graph().items():
        allowed = ALLOWED[room(module)]
        if allowed is None:
            continue
        for target in targets:
            if room(target) not in allowed | {"ground", room(module)}:
                against.append(f"{module} -> {target}")
    assert not against, "imports against data → semantics → models → train/tune → serve:\n" + "\n".join(against)


def strongly_connected(g: dict[str, set[str]]) -> list[set[str]]:
    """Tarjan's algorithm, iterative: the components of more than one module."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(root: str) -> None:
        work = [(root, iter(sorted(g[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(component)
            elif child not in index:
                index[child] = low[child] = counter[0]
                counter[0] += 1
                stack.append(child)
                on_stack.add(child)
                work.append((child, iter(sorted(g[child]))))
            elif child in on_stack:
                low[node] = min(low[node], index[child])

    for module in sorted(g):
        if module not in index:
            visit(module)
    return found


def test_no_import_circle_but_the_backbone_registry():
    circles = [c for c in strongly_connected(graph()) if REGISTRY_CIRCLE not in c]
    assert not circles, f"import circles: {[sorted(c) for c in circles]}"
    registry = [c for c in strongly_connected(graph()) if REGISTRY_CIRCLE in c]
    assert all(m.startswith("llmctr.models.backbones") or m == REGISTRY_CIRCLE for c in registry for m in c)


@pytest.mark.parametrize("edge", [("llmctr.serve.graph", "llmctr.train.job"), ("llmctr.runtime", "llmctr.serve.graph"),
                                  ("llmctr.data.pipeline", "llmctr.models.artifact")])
def test_the_check_catches_an_edge_against_the_flow(edge):
    module, target = edge
    assert room(target) not in ALLOWED[room(module)] | {"ground", room(module)}


def test_the_circle_finder_finds_a_circle():
    assert strongly_connected({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [{"a", "b", "c"}]
