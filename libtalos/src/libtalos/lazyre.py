"""Regular expressions that libraries compile at import time, compiled on first use instead.

PyYAML and cryptography compile patterns in module and class bodies that a short command
never uses: PyYAML's pure-Python reader (the C loader replaces it), cryptography's RFC 4514
name parser. Compiling them is about a tenth of ``talos-gen config``'s time. While
:func:`import_deferred` imports them, ``re.compile`` called from their modules returns a
:class:`LazyPattern`, which compiles the real pattern the first time one of its attributes
(``match``, ``sub``, ``pattern``…) is read.

Only for libraries whose patterns are used through their methods: a lazy pattern is not an
``re.Pattern`` instance, so ``re.match(lazy, text)`` would fail. It is used for PyYAML and
``cryptography.x509``, whose uses were read and are exercised by the tests.
"""

from __future__ import annotations

import importlib
import re
import sys
from typing import Any

_compile = re.compile


class LazyPattern:
    """A pattern compiled when first used."""

    __slots__ = ("_args", "_compiled")

    def __init__(self, pattern: Any, flags: int) -> None:
        self._args = (pattern, flags)
        self._compiled: re.Pattern[Any] | None = None

    def __getattr__(self, name: str) -> Any:
        compiled = self._compiled
        if compiled is None:
            compiled = self._compiled = _compile(*self._args)
        return getattr(compiled, name)

    def __repr__(self) -> str:
        return f"LazyPattern({self._args[0]!r})"


_PACKAGES: set[str] = set()  # top-level packages whose patterns are deferred


def _lazy_compile(pattern: Any, flags: int = 0) -> Any:
    caller = sys._getframe(1).f_globals.get("__name__", "")
    if isinstance(pattern, re.Pattern) or caller.partition(".")[0] not in _PACKAGES:
        return _compile(pattern, flags)
    return LazyPattern(pattern, flags)


def import_deferred(*names: str) -> None:
    """Import ``names`` (those not imported yet) with the import-time patterns of their own
    packages left uncompiled; other modules they import (the standard library's) compile as
    usual. Single-threaded start-up only: ``re.compile`` is swapped while it runs."""
    missing = [n for n in names if n not in sys.modules]
    if not missing:
        return
    _PACKAGES.update(n.partition(".")[0] for n in missing)
    re.compile = _lazy_compile
    try:
        for name in missing:
            importlib.import_module(name)
    finally:
        re.compile = _compile
        _PACKAGES.clear()
