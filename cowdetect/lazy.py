"""Names a package exports but loads on first use (PEP 562), so light commands skip heavy imports."""

from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_getattr(package: str, where: dict[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``where`` maps each public name to the submodule
    that defines it; a loaded name is kept in ``namespace`` (the package's globals)."""
    def __getattr__(name: str) -> Any:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        namespace[name] = value
        return value
    return __getattr__
