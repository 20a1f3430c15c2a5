"""Field docs as data, and the generic machinery that reads and writes models built from them.

A model is a dataclass whose fields are declared with :func:`field`. Each field carries, in one
place, everything the rest of the project says about it: its YAML key, its description, its
allowed values, its examples, its documented default, whether an unset value is left out of the
output (``omitempty``), whether it must be present, and whether its value is secret. From that
one declaration come:

- the strict decoder (:func:`decode`): unknown keys, wrong types and missing required keys become
  :class:`~libtalos.errors.Problem` s naming the document, the dotted key path and the line, all
  reported at once;
- the plain encoder (:func:`to_data`) following Talos's omission rules: ``None`` is never
  written, an ``omitempty`` field is left out when it holds its zero value (``""``, ``0``,
  ``False``, an empty list or mapping), a nested model that is present is always written (a Go
  pointer that is not nil), even when empty (``network: {}``);
- the commented encoder (:func:`to_commented_yaml`) writing YAML as Talos's encoder does: the
  description above every mapping or list key and beside every scalar, an unset field that has a
  documented example printed as a commented example block, 4-space indentation;
- the markdown reference and ``--help`` text (:mod:`libtalos.docgen`).

Messages never contain a value taken from the input: only key paths, type names and lines.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import re
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import yaml

from libtalos.errors import Problem, ValidationError
from libtalos.yamlio import Document, Path

T = TypeVar("T")

INDENT = 4  # what Talos's encoder (yaml.v3) writes


@dataclass(frozen=True)
class Example:
    """One documented example value (plain YAML data) with an optional title."""

    value: Any
    name: str = ""


@dataclass(frozen=True)
class FieldDoc:
    """Everything said about one field. Lives in the dataclass field's metadata."""

    key: str
    description: str
    values: tuple[str, ...] = ()  # allowed values (checked by validate), shown in docs
    examples: tuple[Example, ...] = ()
    default: str | None = None  # the documented default (what the runtime uses when unset)
    omitempty: bool = True
    required: bool = False
    secret: bool = False

    @property
    def summary(self) -> str:
        """The first line of the description."""
        return self.description.strip().splitlines()[0] if self.description.strip() else ""


_META = "talos"
_MISSING: Any = dataclasses.MISSING


def field(
    key: str,
    description: str,
    *,
    default: Any = _MISSING,
    factory: Callable[[], Any] | None = None,
    values: tuple[str, ...] = (),
    examples: tuple[Example, ...] | list[Example] = (),
    doc_default: str | None = None,
    omitempty: bool = True,
    required: bool = False,
    secret: bool = False,
) -> Any:
    """Declare a model field with its docs. Exactly one of ``default``/``factory`` is given."""
    meta = {
        _META: FieldDoc(
            key=key,
            description=description,
            values=values,
            examples=tuple(examples),
            default=doc_default,
            omitempty=omitempty,
            required=required,
            secret=secret,
        )
    }
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=meta)
    if default is _MISSING:
        raise TypeError(f"field {key!r}: a default or a factory is required")
    return dataclasses.field(default=default, metadata=meta)


@dataclass(frozen=True)
class ModelField:
    """A model field resolved once: attribute name, docs, and its Python type."""

    name: str
    doc: FieldDoc
    type: Any


def model_fields(cls: type) -> tuple[ModelField, ...]:
    """The documented fields of a model class, in declaration order."""
    return _model_fields(cls)


@functools.cache
def _model_fields(cls: Any) -> tuple[ModelField, ...]:
    hints = typing.get_type_hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        doc = f.metadata.get(_META)
        if isinstance(doc, FieldDoc):
            out.append(ModelField(f.name, doc, hints[f.name]))
    return tuple(out)


def is_model(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def unwrap_optional(tp: Any) -> tuple[Any, bool]:
    """``X | None`` -> ``(X, True)``; anything else -> ``(tp, False)``."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0], True
        raise TypeError(f"unsupported union {tp!r}")  # models use only X | None
    return tp, False


def type_name(tp: Any) -> str:
    """How a type is shown in messages and docs."""
    tp, _ = unwrap_optional(tp)
    origin = typing.get_origin(tp)
    if origin is list:
        return f"list of {type_name(typing.get_args(tp)[0])}"
    if origin is dict:
        return f"mapping of string to {type_name(typing.get_args(tp)[1])}"
    if is_model(tp):
        return "mapping"
    return {str: "string", int: "integer", bool: "boolean", float: "number", Any: "any"}.get(
        tp, getattr(tp, "__name__", str(tp))
    )


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "mapping"
    return type(value).__name__


# ---------------------------------------------------------------------------------------------
# Decoding


class _Invalid:
    """Marks a value that produced a problem; the field keeps its default."""


_INVALID = _Invalid()


class Decoder:
    """Builds a model from a document's plain data, collecting every problem."""

    def __init__(self, document: Document) -> None:
        self.document = document
        self.problems: list[Problem] = []

    def problem(self, path: Path, message: str) -> None:
        self.problems.append(self.document.problem(path, message))

    def value(self, tp: Any, data: Any, path: Path) -> Any:
        inner, optional = unwrap_optional(tp)
        if data is None:
            if optional:
                return None
            self.problem(path, f"must be a {type_name(inner)} (got null)")
            return _INVALID
        tp = inner
        origin = typing.get_origin(tp)
        if tp is Any:
            return data
        if origin is list:
            if not isinstance(data, list):
                return self._wrong(path, "list", data)
            (item_tp,) = typing.get_args(tp)
            items = [self.value(item_tp, item, (*path, i)) for i, item in enumerate(data)]
            return [i for i in items if i is not _INVALID]
        if origin is dict:
            if not isinstance(data, dict):
                return self._wrong(path, "mapping", data)
            _, value_tp = typing.get_args(tp)
            out = {k: self.value(value_tp, v, (*path, k)) for k, v in data.items()}
            return {k: v for k, v in out.items() if v is not _INVALID}
        if is_model(tp):
            return self.model(tp, data, path)
        if tp is bool:
            return data if isinstance(data, bool) else self._wrong(path, "boolean", data)
        if tp is int:
            ok = isinstance(data, int) and not isinstance(data, bool)
            return data if ok else self._wrong(path, "integer", data)
        if tp is float:
            ok = isinstance(data, int | float) and not isinstance(data, bool)
            return float(data) if ok else self._wrong(path, "number", data)
        if tp is str:
            return data if isinstance(data, str) else self._wrong(path, "string", data)
        raise TypeError(f"unsupported field type {tp!r} at {path!r}")  # a bug in a model

    def _wrong(self, path: Path, want: str, data: Any) -> _Invalid:
        article = "an" if want[0] in "aeiou" else "a"
        self.problem(path, f"must be {article} {want} (got {_kind(data)})")
        return _INVALID

    def model(self, cls: type[T], data: Any, path: Path) -> T | _Invalid:
        if not isinstance(data, dict):
            return self._wrong(path, "mapping", data)
        fields = model_fields(cls)
        by_key = {f.doc.key: f for f in fields}
        kwargs: dict[str, Any] = {}
        for key, raw in data.items():
            mf = by_key.get(key)
            if mf is None:
                self.problem((*path, key), f"unknown key{_did_you_mean(key, by_key)}")
                continue
            value = self.value(mf.type, raw, (*path, key))
            if value is not _INVALID:
                kwargs[mf.name] = value
        for mf in fields:
            if mf.doc.required and mf.doc.key not in data:
                self.problem((*path, mf.doc.key), "is required")
        return cls(**kwargs)


def _did_you_mean(key: str, known: dict[str, Any]) -> str:
    lowered = {k.lower(): k for k in known}
    if key.lower() in lowered:
        return f" (did you mean {lowered[key.lower()]!r}?)"
    import difflib

    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.8)
    return f" (did you mean {close[0]!r}?)" if close else ""


def decode(cls: type[T], document: Document, path: Path = ()) -> T:
    """Build ``cls`` from ``document.data``; raise :class:`ValidationError` with every problem."""
    decoder = Decoder(document)
    data: Any = document.data
    for part in path:
        data = data[part]
    result = decoder.model(cls, data, path)
    if decoder.problems:  # in document order (a missing key is found after its children)
        raise ValidationError(sorted(decoder.problems, key=lambda p: p.line or 0))
    assert not isinstance(result, _Invalid)  # noqa: S101 - a problem was recorded otherwise
    return result


# ---------------------------------------------------------------------------------------------
# Encoding to plain data


def is_zero(value: Any) -> bool:
    """Go's zero value test used by ``omitempty`` (a present model is never zero: a pointer)."""
    if value is None or value is False:
        return True
    if isinstance(value, str | list | dict):
        return len(value) == 0
    if isinstance(value, int | float) and not isinstance(value, bool):
        return value == 0
    return False


def present_fields(obj: Any) -> Iterator[tuple[ModelField, Any, bool]]:
    """``(field, value, emitted)`` for each documented field of a model instance."""
    for mf in model_fields(type(obj)):
        value = getattr(obj, mf.name)
        emitted = value is not None and not (mf.doc.omitempty and is_zero(value))
        yield mf, value, emitted


def to_data(obj: Any) -> Any:
    """A model (or a value inside one) as plain YAML data, following the omission rules."""
    if is_model(type(obj)):
        return {mf.doc.key: to_data(v) for mf, v, emitted in present_fields(obj) if emitted}
    if isinstance(obj, list):
        return [to_data(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_data(v) for k, v in obj.items()}
    return obj


def redacted(obj: Any, mask: str = "******") -> Any:
    """Plain data like :func:`to_data`, with every non-empty secret value replaced by ``mask``."""
    if is_model(type(obj)):
        out = {}
        for mf, v, emitted in present_fields(obj):
            if emitted:
                out[mf.doc.key] = mask if mf.doc.secret and v else redacted(v, mask)
        return out
    if isinstance(obj, list):
        return [redacted(v, mask) for v in obj]
    if isinstance(obj, dict):
        return {k: redacted(v, mask) for k, v in obj.items()}
    return obj


def walk(obj: Any, path: Path = ()) -> Iterator[tuple[Path, ModelField, Any]]:
    """Every present documented field below ``obj``: ``(path, field, value)``."""
    if not is_model(type(obj)):
        return
    for mf in model_fields(type(obj)):
        value = getattr(obj, mf.name)
        if value is None:
            continue
        here = (*path, mf.doc.key)
        yield here, mf, value
        if isinstance(value, list):
            for i, item in enumerate(value):
                yield from walk(item, (*here, i))
        elif isinstance(value, dict):
            for k, item in value.items():
                yield from walk(item, (*here, k))
        else:
            yield from walk(value, here)


# ---------------------------------------------------------------------------------------------
# YAML text: a small emitter that writes what yaml.v3 writes (4-space indent, sequences indented
# under their key), so that comments can be placed where Talos places them.


def scalar(value: Any) -> str:
    """One scalar as YAML text, quoted when needed (multi-line strings: see ``_block``)."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            return {True: ".inf", False: "-.inf"}[value > 0] if math.isinf(value) else ".nan"
        return repr(value)
    if isinstance(value, str):
        return _str_scalar(value)
    return _yaml_scalar(value)


# Strings PyYAML writes plain, as they are: a letter, then letters, digits and + / = . _ -
# (base64 data, names, image references, paths). Starting with a letter, such a string can
# resolve to nothing but a bool or a null, and those words go the slow way.
_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9+/=._-]*")
_WORDS = frozenset({"yes", "no", "true", "false", "on", "off", "null", "y", "n"})


@functools.lru_cache(maxsize=4096)
def _str_scalar(value: str) -> str:
    # Cached: the same strings (examples, defaults, the CA data of init and controlplane) recur
    # across a generation, and asking PyYAML is most of the cost of writing a commented config.
    if _PLAIN.fullmatch(value) and value.lower() not in _WORDS:
        return value
    return _yaml_scalar(value)


def _yaml_scalar(value: Any) -> str:
    text: str = yaml.safe_dump(value, default_flow_style=True, width=1_000_000, allow_unicode=True)
    text = text.removesuffix("\n").removesuffix("\n...")
    if "\n" in text or text.startswith("'"):
        # Quoting needed: double quotes as yaml.v3 (Talos) writes them. A JSON string is a
        # valid YAML double-quoted scalar.
        return json.dumps(value, ensure_ascii=False)
    return text


def _block(value: str, indent: int) -> list[str] | None:
    """A literal block scalar for a multi-line string, or None when it would not round-trip."""
    if "\n" not in value:
        return None
    chomp = "+" if value.endswith("\n\n") else ("" if value.endswith("\n") else "-")
    body = value[:-1] if value.endswith("\n") and chomp != "+" else value
    lines = body.split("\n")
    if chomp == "+":
        lines = value.split("\n")[:-1]
    pad = " " * indent
    out = [f"|{chomp}"] + [(pad + line) if line else "" for line in lines]
    try:
        back = yaml.safe_load("k: " + "\n".join(out) + "\n")
    except yaml.YAMLError:
        return None
    return out if isinstance(back, dict) and back.get("k") == value else None


def _is_container(value: Any) -> bool:
    return isinstance(value, dict | list) or is_model(type(value))


def _key_value(key: str, value: Any, indent: int) -> list[str]:
    """``key: value`` lines for plain data at ``indent``."""
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            return [f"{pad}{key}: {{}}"]
        return [f"{pad}{key}:", *plain_lines(value, indent + INDENT)]
    if isinstance(value, list):
        if not value:
            return [f"{pad}{key}: []"]
        return [f"{pad}{key}:", *plain_lines(value, indent + INDENT)]
    if isinstance(value, str):
        block = _block(value, indent + INDENT)
        if block is not None:
            return [f"{pad}{key}: {block[0]}", *block[1:]]
    return [f"{pad}{key}: {scalar(value)}"]


def _item(lines: list[str], indent: int) -> list[str]:
    """Turn the lines of a value written at ``indent + 2`` into one sequence item at ``indent``."""
    pad = " " * indent
    while lines and not lines[0].strip().split("#", 1)[0]:  # leading comments/blank lines
        lines = lines[1:]
    if not lines:
        return [f"{pad}- {{}}"]
    return [pad + "- " + lines[0][indent + 2 :], *lines[1:]]


def plain_lines(value: Any, indent: int = 0) -> list[str]:
    """Plain data as YAML lines (no comments)."""
    pad = " " * indent
    if isinstance(value, dict):
        if not value:
            return [f"{pad}{{}}"]
        out: list[str] = []
        for k, v in value.items():
            out += _key_value(scalar(str(k)), v, indent)
        return out
    if isinstance(value, list):
        if not value:
            return [f"{pad}[]"]
        out = []
        for item in value:
            if isinstance(item, dict | list) and item:
                out += _item(plain_lines(item, indent + 2), indent)
            elif isinstance(item, str) and (item_block := _block(item, indent + 2)) is not None:
                out += [f"{pad}- {item_block[0]}", *item_block[1:]]
            else:
                out.append(f"{pad}- {scalar(item) if not _is_container(item) else plain(item)}")
        return out
    if isinstance(value, str):
        value_block = _block(value, indent)
        if value_block is not None:
            return [f"{pad}{value_block[0]}", *value_block[1:]]
    return [f"{pad}{scalar(value)}"]


def plain(value: Any) -> str:
    """Flow form of an empty container (``{}``/``[]``)."""
    return "{}" if isinstance(value, dict) else "[]"


def dump_plain(data: Any) -> str:
    """Plain data as a YAML document in Talos's layout."""
    return "\n".join(plain_lines(data)) + "\n"


def _comment_lines(text: str, indent: int) -> list[str]:
    pad = " " * indent
    return [f"{pad}# {line}".rstrip() for line in text.strip().splitlines()]


def _example_block(mf: ModelField, indent: int) -> list[str]:
    pad = " " * indent
    out = [f"{pad}# # {mf.doc.summary}"]
    for ex in mf.doc.examples:
        out.append(f"{pad}#")
        if ex.name:
            out.append(f"{pad}# # {ex.name}")
        for line in _key_value(mf.doc.key, ex.value, 0):
            out.append(f"{pad}# {line}".rstrip())
    out.append("")
    return out


def commented_lines(obj: Any, indent: int = 0, *, examples: bool = True) -> list[str]:
    """A model as YAML lines with Talos-style doc comments and commented examples.

    Inside list items (user data, possibly many) unset fields get no example blocks.
    """
    pad = " " * indent
    out: list[str] = []
    for mf, value, emitted in present_fields(obj):
        if not emitted:
            if examples and mf.doc.examples:  # unset (None or an omitted zero value)
                out += _example_block(mf, indent)
            continue
        key = mf.doc.key
        if is_model(type(value)):
            children = commented_lines(value, indent + INDENT, examples=examples)
            has_data = any(line.strip() and not line.lstrip().startswith("#") for line in children)
            out += _comment_lines(mf.doc.description, indent)
            out.append(f"{pad}{key}:" if has_data else f"{pad}{key}: {{}}")
            out += children
        elif isinstance(value, list) and value and is_model(type(value[0])):
            out += _comment_lines(mf.doc.description, indent)
            out.append(f"{pad}{key}:")
            for item in value:
                lines = commented_lines(item, indent + INDENT + 2, examples=False)
                out += _item(lines, indent + INDENT)
        elif isinstance(value, dict) and value and is_model(type(next(iter(value.values())))):
            out += _comment_lines(mf.doc.description, indent)
            out.append(f"{pad}{key}:")
            for k, item in value.items():
                sub = commented_lines(item, indent + 2 * INDENT, examples=examples)
                has_data = any(ln.strip() and not ln.lstrip().startswith("#") for ln in sub)
                head = f"{pad}{' ' * INDENT}{scalar(str(k))}:"
                out += [head, *sub] if has_data else [head + " {}", *sub]
        elif _is_container(value) or (isinstance(value, str) and "\n" in value):
            out += _comment_lines(mf.doc.description, indent)
            out += _key_value(key, to_data(value), indent)
        else:
            line = _key_value(key, value, indent)
            out.append(f"{line[0]} # {mf.doc.summary}" if mf.doc.summary else line[0])
    return out


def to_commented_yaml(obj: Any) -> str:
    lines = commented_lines(obj)
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines) + "\n"
