"""The frameworks the adapters report (``openai_agents``, ``langchain``): optional, imported only
when an adapter is first used, with an error that says which extra to install."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from types import ModuleType
from typing import Any


class MissingFramework(ImportError):
    """An adapter was used without its framework installed (or with another module of its name)."""


def framework(module: str, extra: str, *, has: str) -> ModuleType:
    """Import ``module`` (the framework's top-level package); ``has``: a name only the framework's
    package defines, to tell it from another module of the same name on ``sys.path`` (the
    Agents SDK's package is called ``agents``, a common folder name)."""
    hint = f'pip install "runwatch[{extra}]"'
    try:
        found = importlib.import_module(module)
    except ImportError as e:
        raise MissingFramework(f"runwatch.client's {extra} adapter needs {module!r}: {hint}") from e
    if not hasattr(found, has):
        where = getattr(found, "__file__", None) or "?"
        raise MissingFramework(
            f"the {module!r} imported from {where} is not the framework the {extra} adapter reports "
            f"(it has no {has!r}): run from a directory without a {module!r} folder, or {hint}"
        )
    return found


def lazy(package: str, where: dict[str, str]) -> Callable[[str], Any]:
    """An adapter package's module ``__getattr__``: each public name in ``where`` is imported from
    its submodule (and so the framework) on first access, then kept in the package."""
    names = importlib.import_module(package).__dict__

    def __getattr__(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{module}"), name)
        names[name] = value
        return value

    return __getattr__
