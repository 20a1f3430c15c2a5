"""A package's public names, imported from their modules on first use (PEP 562).

A package that re-exports names from heavy modules (cryptography, grpclib) would load them all
whenever any of its submodules is imported; with ``__getattr__ = lazy_names(__name__, WHERE)``
each name is imported only when it is first read. Type checkers see the names through the
package's ``if TYPE_CHECKING:`` imports.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any


def lazy_names(package: str, where: Mapping[str, str]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``where`` maps a name to its module's full name."""

    def getattr_(name: str) -> Any:
        module = where.get(name)
        if module is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(module), name)

    return getattr_
