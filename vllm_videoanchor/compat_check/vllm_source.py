"""A vLLM source tree (a wheel, or a directory holding the `vllm` package) read with `ast`,
never imported, and the definitions that "module:Name.attr" paths name in it.

Why not import it: a release other than the installed one needs its own torch (vLLM 0.34's
cannot be imported beside the CPU test environment's). Names are followed through vLLM's
own imports, re-exports and aliases, as Python would resolve them.
"""

from __future__ import annotations

import ast
import re
import zipfile
from pathlib import Path


class Missing(LookupError):
    """A pinned name that the source does not define."""


class VllmSource:
    def __init__(self, location: Path):
        location = Path(location)
        self.location = location
        self._zip = zipfile.ZipFile(location) if location.is_file() else None
        self._names = set(self._zip.namelist()) if self._zip else None
        self._modules: dict[str, tuple[ast.Module, list[str]] | None] = {}
        self._packages: set[str] = set()

    def _read(self, relative: str) -> str | None:
        if self._zip is not None:
            return self._zip.read(relative).decode() if relative in self._names else None
        path = self.location / relative
        return path.read_text() if path.is_file() else None

    def version(self) -> str | None:
        text = self._read("vllm/_version.py") or ""
        match = re.search(r"""^(?:__version__\s*=\s*)?version\s*=\s*['"]([^'"]+)['"]""", text, re.M)
        return match.group(1) if match else None

    def module(self, name: str) -> tuple[ast.Module, list[str]] | None:
        """(tree, lines) of a module of the source, None when it has no such module."""
        if name not in self._modules:
            base = name.replace(".", "/")
            text = self._read(base + ".py")
            if text is None:
                text = self._read(base + "/__init__.py")
                if text is not None:
                    self._packages.add(name)
            self._modules[name] = (ast.parse(text), text.splitlines()) if text is not None else None
        return self._modules[name]

    def is_package(self, name: str) -> bool:
        return self.module(name) is not None and name in self._packages


class Found:
    """A definition: its node and the module it is in (node None: a module; external: a name
    the module imports from outside vLLM, e.g. from transformers, which exists but is not read)."""

    def __init__(self, module: str, node: ast.AST | None, external: bool = False):
        self.module, self.node, self.external = module, node, external


def _absolute(module: str, node: ast.ImportFrom, source: VllmSource) -> str:
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    package = parts if source.is_package(module) else parts[:-1]
    package = package[:len(package) - (node.level - 1)] if node.level > 1 else package
    return ".".join(package + ([node.module] if node.module else []))


def _statements(body):
    """Top-level statements, looking inside if/try blocks (TYPE_CHECKING, fallbacks)."""
    for statement in body:
        if isinstance(statement, ast.If):
            yield from _statements(statement.body)
            yield from _statements(statement.orelse)
        elif isinstance(statement, ast.Try):
            yield from _statements(statement.body)
            for handler in statement.handlers:
                yield from _statements(handler.body)
            yield from _statements(statement.orelse)
        else:
            yield statement


def _targets(statement) -> list[str]:
    if isinstance(statement, ast.Assign):
        return [t.id for t in statement.targets if isinstance(t, ast.Name)]
    if isinstance(statement, (ast.AnnAssign, ast.TypeAlias if hasattr(ast, "TypeAlias") else ())):
        target = statement.target if isinstance(statement, ast.AnnAssign) else statement.name
        return [target.id] if isinstance(target, ast.Name) else []
    return []


def lookup(source: VllmSource, module: str, name: str, seen=None) -> Found:
    """The definition `name` has in `module` (following imports within vLLM)."""
    seen = set() if seen is None else seen
    if (module, name) in seen:
        raise Missing(f"{module}.{name} (import cycle)")
    seen.add((module, name))
    parsed = source.module(module)
    if parsed is None:
        raise Missing(f"no module {module}")
    tree, _ = parsed
    found = None
    stars = []
    for statement in _statements(tree.body):
        if isinstance(statement, (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and statement.name == name:
            found = Found(module, statement)
        elif name in _targets(statement):
            value = getattr(statement, "value", None)
            if isinstance(value, (ast.Name, ast.Attribute)) and isinstance(statement, ast.Assign):  # Old = New
                try:
                    found = _evaluate(source, module, value, seen)
                    continue
                except Missing:
                    pass
            found = Found(module, statement)
        elif isinstance(statement, ast.ImportFrom):
            origin = _absolute(module, statement, source)
            for alias in statement.names:
                if alias.name == "*":
                    stars.append(origin)
                elif (alias.asname or alias.name) == name and origin.split(".")[0] != "vllm":
                    found = Found(origin, None, external=True)
                elif (alias.asname or alias.name) == name:
                    try:
                        found = lookup(source, origin, alias.name, seen)
                    except Missing:
                        if source.module(f"{origin}.{alias.name}") is None:
                            raise
                        found = Found(f"{origin}.{alias.name}", None)
        elif isinstance(statement, ast.Import):
            for alias in statement.names:
                if alias.asname == name and alias.name.split(".")[0] == "vllm":
                    found = Found(alias.name, None)
    if found is not None:
        return found
    for origin in stars:
        try:
            return lookup(source, origin, name, seen)
        except Missing:
            pass
    if source.module(f"{module}.{name}") is not None:
        return Found(f"{module}.{name}", None)
    raise Missing(f"{module} has no {name!r}")


def _evaluate(source, module, expr, seen) -> Found:
    """What a Name / Attribute expression of `module` refers to (within vLLM)."""
    if isinstance(expr, ast.Name):
        return lookup(source, module, expr.id, seen)
    if isinstance(expr, ast.Attribute):
        owner = _evaluate(source, module, expr.value, seen)
        return member(source, owner, expr.attr)
    if isinstance(expr, ast.Subscript):  # Generic[...] bases
        return _evaluate(source, module, expr.value, seen)
    raise Missing(f"{ast.unparse(expr)} is not a name")


def bases(source: VllmSource, found: Found) -> list[Found]:
    """The class's base classes that vLLM defines (others are left out)."""
    result = []
    for base in found.node.bases:
        try:
            resolved = _evaluate(source, found.module, base, set())
        except Missing:
            continue
        if isinstance(resolved.node, ast.ClassDef):
            result.append(resolved)
    return result


def mro(source: VllmSource, found: Found) -> list[Found]:
    """The class and its vLLM bases, in Python's C3 order (depth first, good enough here)."""
    order, stack = [], [found]
    while stack:
        current = stack.pop(0)
        if any(c.node is current.node for c in order):
            continue
        order.append(current)
        stack = bases(source, current) + stack
    return order


def member(source: VllmSource, owner: Found, name: str) -> Found:
    if owner.external:
        raise Missing(f"{name!r}: its owner is defined outside vLLM ({owner.module})")
    if owner.node is None:  # a module
        return lookup(source, owner.module, name)
    if not isinstance(owner.node, ast.ClassDef):
        raise Missing(f"{owner.node.name if hasattr(owner.node, 'name') else owner.module} has no {name!r}")
    for cls in mro(source, owner):
        for statement in cls.node.body:
            if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and statement.name == name:
                return Found(cls.module, statement)
            if name in _targets(statement):
                return Found(cls.module, statement)
    raise Missing(f"{owner.node.name} has no {name!r}")


def resolve(source: VllmSource, path: str) -> Found:
    """The definition named "module:Attr.attr" (or "module", or "module:")."""
    module, _, qualname = path.partition(":")
    if not qualname:
        if source.module(module) is None:
            raise Missing(f"no module {module}")
        return Found(module, None)
    parts = qualname.split(".")
    found = lookup(source, module, parts[0])
    for part in parts[1:]:
        found = member(source, found, part)
    return found
