"""Check the compatibility module's pins against a vLLM release without installing it.

    python -m vllm_videoanchor.compat_check 0.34.0             # downloads the wheel (pip, no deps)
    python -m vllm_videoanchor.compat_check --wheel vllm-0.34.0-....whl
    python -m vllm_videoanchor.compat_check --source .venv/lib/python3.11/site-packages

It reads the wheel's Python source with `ast` and never imports it (vLLM 0.34 needs a torch
that cannot be imported beside the CPU test environment's), and checks every pin of
engine/compat.py that applies to that version: names resolve, parameter names are those
`inspect.signature` would give (self, *args and **kwargs included), dataclass fields
exist (base classes in vLLM included), and sources mention what we read. The pin table is
the one `compat.pin_mismatches()` checks at run time against the installed vLLM.

Exit status 0 and "all N pins hold" when every pin holds; 1, naming each failing pin,
otherwise; 2 when the wheel cannot be had.
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

from .engine import compat

CACHE_ENV = "VIDEOANCHOR_WHEEL_CACHE"


class Missing(LookupError):
    """A pinned name that the source does not define."""


# --- reading a vLLM source tree (a wheel, or a directory holding the `vllm` package) ----


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


# --- what inspect would say -------------------------------------------------------------


def _decorators(node) -> list[str]:
    names = []
    for decorator in getattr(node, "decorator_list", []):
        target = decorator.func if isinstance(decorator, ast.Call) else decorator
        names.append(target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", ""))
    return names


def _parameters(function) -> list[str]:
    args = function.args
    names = [a.arg for a in args.posonlyargs + args.args]
    if args.vararg:
        names.append(args.vararg.arg)
    names += [a.arg for a in args.kwonlyargs]
    if args.kwarg:
        names.append(args.kwarg.arg)
    return names


def _is_classvar(annotation) -> bool:
    text = ast.unparse(annotation)
    return bool(re.match(r"""^['"]?(typing\.)?(ClassVar|InitVar|dataclasses\.InitVar)\b""", text))


def _makes_dataclass(name: str) -> bool:
    return "dataclass" in name or name == "config"  # vllm.config's @config is a pydantic dataclass


def _is_dataclass(source, found) -> bool:
    return any(_makes_dataclass(name) for cls in mro(source, found) for name in _decorators(cls.node))


def dataclass_fields(source: VllmSource, found: Found) -> list[str]:
    """Field names as dataclasses.fields lists them (bases first, in definition order)."""
    if not isinstance(found.node, ast.ClassDef) or not _is_dataclass(source, found):
        raise TypeError(f"{getattr(found.node, 'name', found.module)} is not a dataclass")
    fields = []
    for cls in reversed(mro(source, found)):
        for statement in cls.node.body:
            if (isinstance(statement, ast.AnnAssign) and isinstance(statement.target, ast.Name)
                    and not _is_classvar(statement.annotation) and statement.target.id not in fields):
                fields.append(statement.target.id)
    return fields


def signature(source: VllmSource, found: Found) -> tuple[str, ...]:
    """Parameter names in the form inspect.signature gives them."""
    if found.external:
        raise TypeError(f"defined outside vLLM ({found.module}): not read")
    node = found.node
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
        names = _parameters(node)
        return tuple(names[1:] if "classmethod" in _decorators(node) else names)
    if isinstance(node, ast.ClassDef):
        for cls in mro(source, found):
            for statement in cls.node.body:
                if isinstance(statement, ast.FunctionDef) and statement.name == "__init__":
                    return tuple(_parameters(statement)[1:])
            if any(_makes_dataclass(name) for name in _decorators(cls.node)):
                return tuple(dataclass_fields(source, found))
        return ()
    raise TypeError(f"{ast.unparse(node)[:60]!r} has no signature")


def source_text(source: VllmSource, found: Found) -> str:
    """The definition's source, decorators included (what inspect.getsource returns)."""
    if found.external:
        raise Missing(f"defined outside vLLM ({found.module}): not read")
    _, lines = source.module(found.module)
    if found.node is None:
        return "\n".join(lines)
    first = min([found.node.lineno] + [d.lineno for d in getattr(found.node, "decorator_list", [])])
    return "\n".join(lines[first - 1:found.node.end_lineno])


# --- the check ------------------------------------------------------------------------------


def check(source: VllmSource, version: str) -> tuple[int, list[str]]:
    """(number of pins checked, problems) for `source`, read as vLLM `version`."""
    pins = compat.pins_for(version)
    problems = []
    for path in pins.names:
        try:
            resolve(source, path)
        except Missing as exc:
            problems.append(f"{path}: missing ({exc})")
    for path, expected in pins.methods.items():
        try:
            found = signature(source, resolve(source, path))
        except (Missing, TypeError) as exc:
            problems.append(f"{path}: missing ({exc})")
            continue
        if found != tuple(expected):
            problems.append(f"{path}: parameters {found}, pinned {tuple(expected)}")
    for path, names in pins.fields.items():
        try:
            fields = set(dataclass_fields(source, resolve(source, path)))
        except (Missing, TypeError) as exc:
            problems.append(f"{path}: missing ({exc})")
            continue
        problems += [f"{path}: no field {name!r}" for name in names if name not in fields]
    for path, snippets in pins.source.items():
        try:
            text = source_text(source, resolve(source, path))
        except Missing as exc:
            problems.append(f"{path}: missing ({exc})")
            continue
        problems += [f"{path}: no longer mentions {snippet!r}" for snippet in snippets if snippet not in text]
    return pins.count, problems


def cache_dir() -> Path:
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "vllm-videoanchor" / "wheels"


def download(version: str, directory: Path) -> Path:
    """vLLM's wheel of `version` (no dependencies), from `directory` or downloaded into it."""
    directory.mkdir(parents=True, exist_ok=True)
    wheels = sorted(directory.glob(f"vllm-{version}-*.whl"))
    if wheels:
        return wheels[0]
    base = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--quiet",
            f"vllm=={version}", "-d", str(directory)]
    # the Python sources are the same in every platform's wheel; Linux x86_64 always has one
    for extra in ([], ["--platform", "manylinux_2_28_x86_64", "--python-version", "3.12"]):
        result = subprocess.run(base + extra, capture_output=True, text=True)
        wheels = sorted(directory.glob(f"vllm-{version}-*.whl"))
        if wheels:
            return wheels[0]
    raise RuntimeError(f"pip download --no-deps vllm=={version} failed: {result.stderr.strip()[-2000:]}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vllm_videoanchor.compat_check", description=__doc__.split("\n")[0])
    parser.add_argument("version", nargs="?", help="vLLM version, e.g. 0.34.0 (default: the wheel's or source's own)")
    where = parser.add_mutually_exclusive_group()
    where.add_argument("--wheel", type=Path, help="a vLLM wheel file (nothing is downloaded)")
    where.add_argument("--source", type=Path, help="a directory holding the vllm package, e.g. a site-packages")
    parser.add_argument("--cache", type=Path, default=None,
                        help=f"where downloaded wheels are kept (default: ${CACHE_ENV}, else "
                             "~/.cache/vllm-videoanchor/wheels)")
    args = parser.parse_args(argv)
    if args.wheel is None and args.source is None and args.version is None:
        parser.error("give a vLLM version, --wheel or --source")
    location = args.wheel or args.source
    if location is None:
        try:
            location = download(args.version, args.cache or cache_dir())
        except RuntimeError as exc:
            print(exc, file=sys.stderr)
            return 2
    if not location.exists():
        print(f"{location}: no such file or directory", file=sys.stderr)
        return 2
    source = VllmSource(location)
    if source.module("vllm") is None:
        print(f"{location}: holds no vllm package", file=sys.stderr)
        return 2
    own = source.version()
    version = args.version or own
    if version is None:
        parser.error(f"{location} does not say its version: give it")
    label = f"vLLM {version}" + (f" (its source says {own})" if own and own.split("+")[0] != version else "")
    if not compat.is_supported(version):
        print(f"note: {version} is outside the supported range {compat.SUPPORTED_RANGE}", file=sys.stderr)
    count, problems = check(source, version)
    if problems:
        print(f"{label}, {location}: {len(problems)} problem(s) in {count} pins:")
        for problem in problems:
            print(f"  FAIL {problem}")
        return 1
    print(f"{label}, {location}: all {count} pins hold")
    return 0


if __name__ == "__main__":
    sys.exit(main())
