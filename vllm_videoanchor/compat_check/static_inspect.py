"""What `inspect` and `dataclasses` would say of a definition found in an unimported vLLM
source: parameter names, dataclass fields, source text.

The run-time check (engine.compat.pin_mismatches) asks `inspect` of the installed vLLM;
these give the same answers from the `ast`, so one pin table serves both checks.
"""

from __future__ import annotations

import ast
import re

from .vllm_source import Found, Missing, VllmSource, mro


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
