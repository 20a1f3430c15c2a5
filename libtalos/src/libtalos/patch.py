"""Config patches: RFC 6902 JSON patches and strategic-merge YAML patches.

A patch argument is inline text, ``@FILE`` (as talosctl takes them) or ``@-``: stdin, which is
read once, so at most one argument of a command may say it, and which is refused when the command
already reads its input from there. Its form is recognised from its content: a YAML/JSON *list*
of operations is an RFC 6902 patch; a *mapping* is merged into the document (mappings merge key
by key, everything else replaces).
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from libtalos import yamlio
from libtalos.errors import Problem, TalosError, TalosIOError, ValidationError

_OPS = {"add", "remove", "replace", "move", "copy", "test"}


class PatchError(TalosError):
    """A patch does not apply to the document."""


def read_patch(
    arg: str, *, stdin_taken: bool = False, option: str = "--config-patch"
) -> tuple[Any, str]:
    """Parse one patch argument of ``option``: inline YAML/JSON, ``@path``, or ``@-`` for stdin
    (which ``stdin_taken`` refuses: the command reads its input from there)."""
    if arg == "@-":
        from libtalos.errors import UsageError
        from libtalos.inputs import read_input

        if stdin_taken:
            raise UsageError(
                f"{option} @-: stdin is already the input; give the patch or the input as a file"
            )
        text, source = read_input("-")
        return yamlio.load_one(text, source).data, source
    if arg.startswith("@"):
        path = arg[1:]
        try:
            text = Path(path).read_text(encoding="utf-8")
        except OSError as exc:
            raise TalosIOError(f"{path}: cannot read patch: {exc.strerror}") from None
        source = path
    else:
        text, source = arg, option
    doc = yamlio.load_one(text, source)
    return doc.data, source


def read_patch_groups(
    *groups: Sequence[str] | None, stdin_taken: bool = False, option: str = "--config-patch"
) -> list[list[tuple[Any, str]]]:
    """Parse several options' patch arguments (``--config-patch``, ``--config-patch-worker``
    ...), one list per option; ``@-`` may appear once among them all, since stdin is read once.
    """
    dashes = sum(list(group or []).count("@-") for group in groups)
    if dashes > 1:
        from libtalos.errors import UsageError

        raise UsageError(
            f"{option} @-: given {dashes} times, but stdin can be read only once; "
            "give the other patches as files"
        )
    return [
        [read_patch(arg, stdin_taken=stdin_taken, option=option) for arg in group or []]
        for group in groups
    ]


def apply_patch(document: Any, patch: Any, source: str = "patch") -> Any:
    """Apply one parsed patch to a plain-data document; returns a new document."""
    if isinstance(patch, list):
        return apply_json_patch(document, patch, source)
    if isinstance(patch, dict):
        return merge(copy.deepcopy(document), patch)
    raise ValidationError(
        [Problem("a patch must be a list of RFC 6902 operations or a mapping", source=source)]
    )


def merge(base: Any, overlay: Any) -> Any:
    """Strategic merge: mappings merge recursively; lists and scalars replace."""
    if isinstance(base, dict) and isinstance(overlay, dict):
        for key, value in overlay.items():
            base[key] = merge(base.get(key), value) if key in base else copy.deepcopy(value)
        return base
    return copy.deepcopy(overlay)


def _pointer(path: Any, source: str, index: int) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise ValidationError(
            [
                Problem(
                    f"operation {index}: path must be a JSON pointer like /machine/install/disk",
                    source=source,
                )
            ]
        )
    if path == "":
        return []
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _walk(doc: Any, parts: list[str], where: str) -> Any:
    cur = doc
    for part in parts:
        if isinstance(cur, dict):
            if part not in cur:
                raise PatchError(f"{where}: path does not exist")
            cur = cur[part]
        elif isinstance(cur, list):
            cur = cur[_index(cur, part, where, allow_end=False)]
        else:
            raise PatchError(f"{where}: path does not exist")
    return cur


def _index(seq: list[Any], part: str, where: str, *, allow_end: bool) -> int:
    if part == "-" and allow_end:
        return len(seq)
    if not part.isdigit() or (len(part) > 1 and part.startswith("0")):
        raise PatchError(f"{where}: {part!r} is not a list index")
    i = int(part)
    limit = len(seq) + (1 if allow_end else 0)
    if i >= limit:
        raise PatchError(f"{where}: index {i} is out of range")
    return i


def _add(doc: Any, parts: list[str], value: Any, where: str) -> Any:
    if not parts:
        return copy.deepcopy(value)
    parent = _walk(doc, parts[:-1], where)
    last = parts[-1]
    if isinstance(parent, dict):
        parent[last] = copy.deepcopy(value)
    elif isinstance(parent, list):
        parent.insert(_index(parent, last, where, allow_end=True), copy.deepcopy(value))
    else:
        raise PatchError(f"{where}: parent is not a mapping or list")
    return doc


def _remove(doc: Any, parts: list[str], where: str) -> Any:
    if not parts:
        raise PatchError(f"{where}: cannot remove the whole document")
    parent = _walk(doc, parts[:-1], where)
    last = parts[-1]
    if isinstance(parent, dict):
        if last not in parent:
            raise PatchError(f"{where}: path does not exist")
        return parent.pop(last)
    if isinstance(parent, list):
        return parent.pop(_index(parent, last, where, allow_end=False))
    raise PatchError(f"{where}: path does not exist")


def apply_json_patch(document: Any, ops: list[Any], source: str = "patch") -> Any:
    """RFC 6902: add, remove, replace, move, copy, test; atomic (the input is never changed)."""
    doc = copy.deepcopy(document)
    for i, op in enumerate(ops):
        if not isinstance(op, dict) or op.get("op") not in _OPS:
            raise ValidationError(
                [
                    Problem(
                        f"operation {i}: needs 'op', one of {', '.join(sorted(_OPS))}",
                        source=source,
                    )
                ]
            )
        kind = op["op"]
        parts = _pointer(op.get("path"), source, i)
        where = f"{source}: operation {i} ({kind} {op.get('path')})"
        if kind in ("add", "replace", "test") and "value" not in op:
            raise ValidationError(
                [Problem(f"operation {i}: '{kind}' needs 'value'", source=source)]
            )
        if kind == "add":
            doc = _add(doc, parts, op["value"], where)
        elif kind == "remove":
            _remove(doc, parts, where)
        elif kind == "replace":
            if parts:
                _remove(doc, parts, where)
            doc = _add(doc, parts, op["value"], where)
        elif kind in ("move", "copy"):
            src = _pointer(op.get("from"), source, i)
            if kind == "move" and parts[: len(src)] == src and len(parts) > len(src):
                raise PatchError(f"{where}: cannot move a value into itself")
            value = (
                _remove(doc, src, where)
                if kind == "move"
                else copy.deepcopy(_walk(doc, src, where))
            )
            doc = _add(doc, parts, value, where)
        elif _walk(doc, parts, where) != op["value"]:
            raise PatchError(f"{where}: test failed")
    return doc


def patch_config(cfg: Any, patches: list[tuple[Any, str]], name: str) -> Any:
    """Patch a typed machine config and load the result back strictly.

    ``patches`` are parsed patches (:func:`read_patch`), applied in order. The result goes
    through the strict loader, so a patch cannot introduce an unknown key or a wrong type.
    """
    if not patches:
        return cfg
    from libtalos import config as cfgmod

    data = yamlio.load_one(cfgmod.encode(cfg, comments=False), name).data
    for patch, source in patches:
        data = apply_patch(data, patch, source)
    return cfgmod.load(yamlio.dump(data), f"{name} (patched)").config
