"""Output helpers that import neither Typer nor PyYAML, so that fast paths can use them.

:func:`dump` writes the block-style YAML that :func:`libtalos.yamlio.dump` writes, for the
simple shapes this tool emits (nested mappings of strings): a scalar is written plain only when
it is certain that YAML reads it back as the same string; for anything else the whole document
goes through :func:`libtalos.yamlio.dump`. A test checks both give the same bytes.
"""

from __future__ import annotations

import os
import re
from typing import Any

from libtalos.errors import OutputExistsError

# Values this tool writes: base64 (keys, certs, secrets) and tokens ([a-z0-9]{6}.[a-z0-9]{16}).
# With at least one letter and none of YAML's number prefixes they cannot resolve to anything but
# a string (no YAML 1.1 int/float/bool/null/timestamp form fits this alphabet).
_SAFE = re.compile(r"[A-Za-z0-9+/]*[A-Za-z][A-Za-z0-9+/]*=*|[a-z0-9]+\.[a-z0-9]+")
_NUMBER_PREFIX = re.compile(r"[-+]?0[xob]", re.IGNORECASE)
_KEY = re.compile(r"[a-z][a-z0-9]*")
_WORDS = {"y", "n", "yes", "no", "true", "false", "on", "off", "null"}


def _plain(value: str) -> bool:
    return (
        _SAFE.fullmatch(value) is not None
        and _NUMBER_PREFIX.match(value) is None
        and value.lower() not in _WORDS
        and any(c.isalpha() for c in value)
    )


def _lines(data: dict[str, Any], indent: str, out: list[str]) -> bool:
    for key, value in data.items():
        if not isinstance(key, str) or _KEY.fullmatch(key) is None or key in _WORDS:
            return False
        if isinstance(value, dict) and value:
            out.append(f"{indent}{key}:\n")
            if not _lines(value, indent + "    ", out):
                return False
        elif isinstance(value, str) and _plain(value):
            out.append(f"{indent}{key}: {value}\n")
        else:
            return False
    return True


def dump(data: dict[str, Any]) -> str:
    """The YAML text of ``data``, as :func:`libtalos.yamlio.dump` writes it."""
    out: list[str] = []
    if data and _lines(data, "", out):
        return "".join(out)
    from libtalos import yamlio

    return yamlio.dump(data)


def check_output(output: str, force: bool) -> None:
    """Refuse an existing output file before doing any work (atomic_write checks again)."""
    if output != "-" and not force and os.path.lexists(output):
        raise OutputExistsError(f"{output}: file exists", hint="pass --force to overwrite it")


def write_secrets(talos_version: str, output: str, force: bool) -> None:
    """The ``secrets`` command's work, shared by the Typer command and the fast path."""
    from libtalos import fsutil, pki
    from libtalos.errors import PKIError, UsageError

    try:
        contract = pki.parse_contract(talos_version)
    except PKIError as exc:
        raise UsageError(f"--talos-version: {exc}") from None
    check_output(output, force)
    bundle = pki.generate_secrets(contract)
    fsutil.write_output(output, dump(bundle.to_yaml_data()), mode=fsutil.SECRET_MODE, force=force)
