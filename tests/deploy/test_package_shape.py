"""The runtime package keeps its shape: short modules, no import cycle, and each layer
imports only what it may (ssc/ no vLLM, engine/ no HTTP, the package never the server nor
the tests). Read statically with ast: nothing is imported."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"vllm_videoanchor": ROOT / "vllm_videoanchor", "vllm_videoanchor_server": ROOT / "server"}


def modules() -> dict[str, Path]:
    """Dotted module name -> file, for both installed packages."""
    found = {}
    for package, folder in PACKAGES.items():
        for path in sorted(folder.rglob("*.py")):
            parts = path.relative_to(folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            found[".".join((package, *parts))] = path
    return found


MODULES = modules()


def is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def top_level_imports(name: str) -> list[str]:
    """Absolute names imported at module level (imports inside functions are deferred on
    purpose: heavy libraries, or the one command that needs them)."""
    tree = ast.parse(MODULES[name].read_text())
    base = name if is_package(name) else name.rpartition(".")[0]
    imported = []
    for node in tree.body:
        if isinstance(node, ast.Import):
            imported += [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                anchor = base.rsplit(".", node.level - 1)[0] if node.level > 1 else base
                source = f"{anchor}.{node.module}" if node.module else anchor
            else:
                source = node.module
            imported.append(source)
            imported += [f"{source}.{alias.name}" for alias in node.names if f"{source}.{alias.name}" in MODULES]
    return imported


def internal_edges() -> dict[str, set[str]]:
    """module -> the package modules it imports at module level (a package's __init__ counts
    as a module; importing a.b.c imports a.b too, but a package importing its own
    submodules is the normal re-export, so parents are not added)."""
    return {name: {target for target in top_level_imports(name) if target in MODULES and target != name}
            for name in MODULES}


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, found, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in edges[v]:
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

    for v in edges:
        if v not in index:
            visit(v)
    return found


def test_no_import_cycle():
    edges = internal_edges()
    # the reader resolves relative imports (else it would find no cycle for want of edges)
    assert "vllm_videoanchor.ssc.array_ops" in edges["vllm_videoanchor.ssc.admm"]
    assert "vllm_videoanchor.engine.compat" in edges["vllm_videoanchor.engine.attention.cpu"]
    assert not cycles(edges)


def test_the_cycle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


@pytest.mark.parametrize("layer, forbidden", [
    ("vllm_videoanchor.ssc", ("vllm", "vllm_videoanchor.engine", "vllm_videoanchor_server")),
    ("vllm_videoanchor.engine", ("fastapi", "starlette", "httpx", "uvicorn", "vllm_videoanchor_server")),
    ("vllm_videoanchor", ("vllm_videoanchor_server", "tests")),
])
def test_layers_import_only_what_they_may(layer, forbidden):
    """Every import, deferred ones too."""
    offending = []
    for name, path in MODULES.items():
        if not (name == layer or name.startswith(layer + ".")):
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            sources = ([a.name for a in node.names] if isinstance(node, ast.Import)
                       else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level
                       else [])
            offending += [f"{name}: {s}" for s in sources if any(s == f or s.startswith(f + ".") for f in forbidden)]
    assert not offending
