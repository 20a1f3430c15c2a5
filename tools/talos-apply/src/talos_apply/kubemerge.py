"""Merging an admin kubeconfig into an existing one (``talosctl kubeconfig``'s default).

Entries of ``clusters``, ``users`` and ``contexts`` are matched by name. A clash is replaced
with ``force``; otherwise the new context (and its cluster and user) is renamed ``NAME-1``,
``NAME-2`` …, and the rename is reported. The merged file's current context is the new one.
"""

from __future__ import annotations

from typing import Any

from libtalos import yamlio
from libtalos.errors import ParseError, Problem

_LISTS = ("clusters", "users", "contexts")
_NOT_A_KUBECONFIG = "not a kubeconfig (expected clusters/users/contexts lists)"


def parse(text: str, source: str) -> dict[str, Any]:
    """The kubeconfig in ``text`` as plain data; ``{}`` for an empty file.

    Parsed by :mod:`libtalos.yamlio` (bounded aliases and nesting, no duplicate keys); anything
    that is not one mapping with lists of mappings under ``clusters``, ``users`` and
    ``contexts`` is a :class:`ParseError` naming ``source`` and the line.
    """
    docs = yamlio.load_documents(text, source, allow_empty=True)
    if not docs:
        return {}
    if len(docs) > 1:
        raise ParseError([Problem(f"expected one YAML document, found {len(docs)}", source=source)])
    doc = docs[0]
    data = doc.data
    if not isinstance(data, dict):
        raise ParseError([doc.problem((), _NOT_A_KUBECONFIG)])
    problems: list[Problem] = []
    for key in _LISTS:
        items = data.get(key)
        if items is None:
            continue
        if not isinstance(items, list):
            problems.append(doc.problem((key,), f"{_NOT_A_KUBECONFIG}: must be a list"))
            continue
        for i, item in enumerate(items):
            if not isinstance(item, dict):
                problems.append(doc.problem((key, i), "must be a mapping with a name"))
    current = data.get("current-context")
    if current is not None and not isinstance(current, str):
        problems.append(doc.problem(("current-context",), "must be a string"))
    if problems:
        raise ParseError(problems)
    return data


def _names(items: list[Any]) -> set[str]:
    return {str(i.get("name")) for i in items if isinstance(i, dict)}


def merge(existing: dict[str, Any], new: dict[str, Any], *, force: bool) -> list[str]:
    """Merge ``new`` into ``existing`` in place; returns one message per rename."""
    notes: list[str] = []
    for key in _LISTS:
        existing.setdefault(key, [])
        if existing[key] is None:
            existing[key] = []
    renames: dict[str, dict[str, str]] = {k: {} for k in _LISTS}
    for key in _LISTS:
        taken = _names(existing[key])
        for item in new.get(key) or []:
            name = str(item.get("name"))
            if name in taken:
                if force:
                    existing[key] = [i for i in existing[key] if i.get("name") != name]
                else:
                    n = 1
                    while f"{name}-{n}" in taken:
                        n += 1
                    renamed = f"{name}-{n}"
                    renames[key][name] = renamed
                    notes.append(f"renamed {key[:-1]} {name!r} -> {renamed!r}")
    for key in _LISTS:
        for item in new.get(key) or []:
            entry = dict(item)
            entry["name"] = renames[key].get(str(entry.get("name")), entry.get("name"))
            if key == "contexts" and isinstance(entry.get("context"), dict):
                ctx = dict(entry["context"])
                for field, kind in (("cluster", "clusters"), ("user", "users")):
                    ref = str(ctx.get(field))
                    ctx[field] = renames[kind].get(ref, ctx.get(field))
                entry["context"] = ctx
            existing[key].append(entry)
    current = new.get("current-context")
    if current:
        existing["current-context"] = renames["contexts"].get(current, current)
    existing.setdefault("apiVersion", "v1")
    existing.setdefault("kind", "Config")
    return notes
