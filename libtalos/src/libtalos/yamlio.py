"""Strict YAML in, stable YAML out.

Loading composes the node graph (libyaml's C parser when present) and builds plain Python
values from it, keeping the line of every key so that later checks can name it. Duplicate keys,
null documents, anchors used as merge keys and non-string keys are errors here already.

Dumping uses block style, 4-space indentation (what Talos's encoder writes), keeps key order and
never emits anchors or aliases.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import yaml

from libtalos.errors import ParseError, Problem

try:  # pragma: no cover - depends on how PyYAML was built
    _Loader: type[yaml.SafeLoader] = yaml.CSafeLoader  # type: ignore[assignment]
    _Dumper: type[yaml.SafeDumper] = yaml.CSafeDumper  # type: ignore[assignment]
except AttributeError:  # pragma: no cover
    _Loader = yaml.SafeLoader
    _Dumper = yaml.SafeDumper


Path = tuple[str | int, ...]


@dataclass
class Document:
    """One loaded YAML document: its value, where each key sits, and the text it came from."""

    data: Any
    lines: dict[Path, int] = field(default_factory=dict)
    source: str = ""
    index: int = 1  # 1-based position in the stream
    text: str = ""  # this document's own source text, for byte-exact pass-through

    def line(self, path: Path) -> int | None:
        """The line of ``path``, or of its nearest ancestor that has one."""
        p = tuple(path)
        while True:
            if p in self.lines:
                return self.lines[p]
            if not p:
                return None
            p = p[:-1]

    def problem(self, path: Path, message: str) -> Problem:
        return Problem(
            message=message,
            path=format_path(path),
            line=self.line(path),
            source=self.source,
            document=self.index,
        )


def format_path(path: Path) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


_SCALAR_TAGS = {
    "tag:yaml.org,2002:str",
    "tag:yaml.org,2002:int",
    "tag:yaml.org,2002:float",
    "tag:yaml.org,2002:bool",
    "tag:yaml.org,2002:null",
    "tag:yaml.org,2002:timestamp",
    "tag:yaml.org,2002:binary",
}


MAX_DEPTH = 100  # nesting levels; a machine config has about ten
ALIAS_ALLOWANCE = 10_000  # nodes that aliases may add beyond the document's own ones
MAX_NODES = 100_000  # per stream unless the caller sets a limit; a machine config has about 300


class _BoundError(Exception):
    """Building stopped: the document expands beyond its bounds (see :class:`_Builder`)."""

    def __init__(self, line: int, message: str) -> None:
        self.line = line
        self.message = message


class _Builder:
    """Plain values from a composed node graph, in memory bounded by the input.

    An alias is a reference to a node composed once, so a few hundred bytes of nested aliases
    can stand for billions of values (and an alias inside its own anchor for a cycle). The
    builder counts the nodes it makes: at most twice the distinct nodes of the document plus
    :data:`ALIAS_ALLOWANCE`, so ordinary uses of aliases load and an alias bomb is refused
    after a bounded amount of work; nesting is limited to :data:`MAX_DEPTH` levels.
    """

    def __init__(self, source: str, index: int) -> None:
        self.source = source
        self.index = index
        self.lines: dict[Path, int] = {}
        self.problems: list[Problem] = []
        self._constructor = _Loader("")  # only its scalar construction is used
        self._seen: set[int] = set()
        self._open: set[int] = set()  # collections being built: an alias to one is a cycle
        self._built = 0

    def build(self, node: yaml.Node, path: Path) -> Any:
        line = node.start_mark.line + 1
        self._seen.add(id(node))
        self._built += 1
        if self._built > 2 * len(self._seen) + ALIAS_ALLOWANCE:
            raise _BoundError(
                line,
                f"aliases expand to more than {self._built} values (the anchor on this line); "
                f"at most {ALIAS_ALLOWANCE} more than the document's own are allowed",
            )
        if len(path) > MAX_DEPTH:
            raise _BoundError(line, f"nested deeper than {MAX_DEPTH} levels")
        if isinstance(node, yaml.CollectionNode):
            if id(node) in self._open:
                raise _BoundError(line, "an alias refers to the collection that contains it")
            self._open.add(id(node))
            try:
                return self._collection(node, path)
            finally:
                self._open.discard(id(node))
        return self._scalar(node, path)

    def _collection(self, node: yaml.Node, path: Path) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if isinstance(node, yaml.MappingNode):
            out: dict[str, Any] = {}
            for key_node, value_node in node.value:
                line = key_node.start_mark.line + 1
                if key_node.tag == "tag:yaml.org,2002:merge":
                    self._add(path, line, "merge keys (<<) are not allowed")
                    continue
                if not isinstance(key_node, yaml.ScalarNode):
                    self._add(path, line, "keys must be strings")
                    continue
                key = str(key_node.value)
                if key in out:
                    first = self.lines.get((*path, key))
                    self._add((*path, key), line, f"duplicate key (first defined on line {first})")
                    continue
                self.lines[(*path, key)] = line
                out[key] = self.build(value_node, (*path, key))
            return out
        return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]

    def _scalar(self, node: yaml.Node, path: Path) -> Any:
        self.lines.setdefault(path, node.start_mark.line + 1)
        if node.tag not in _SCALAR_TAGS:
            self._add(path, node.start_mark.line + 1, f"unsupported tag {node.tag}")
            return None
        if node.tag == "tag:yaml.org,2002:timestamp":
            return str(node.value)  # keep timestamps as the text written
        return self._constructor.construct_object(node, deep=True)

    def _add(self, path: Path, line: int, message: str) -> None:
        self.problems.append(
            Problem(
                message=message,
                path=format_path(path),
                line=line,
                source=self.source,
                document=self.index,
            )
        )


def _check_node_count(text: str, source: str, limit: int) -> None:
    """Refuse a stream of more than ``limit`` nodes before composing any of it.

    Counting parser events runs in libyaml and keeps nothing, so a document of hundreds of
    thousands of tiny nodes (each costs about half a KiB once composed) is refused in constant
    memory; malformed YAML is left for the composer to report.
    """
    count = 0
    try:
        for event in yaml.parse(text, Loader=_Loader):
            if isinstance(event, _NODE_EVENTS):
                count += 1
                if count > limit:
                    line = event.start_mark.line + 1 if event.start_mark else None
                    raise ParseError(
                        [
                            Problem(
                                message=f"more than {limit} YAML nodes (the limit for this input)",
                                line=line,
                                source=source,
                            )
                        ]
                    )
    except yaml.YAMLError:
        return


_NODE_EVENTS = (yaml.ScalarEvent, yaml.AliasEvent, yaml.SequenceStartEvent, yaml.MappingStartEvent)


def load_documents(
    text: str,
    source: str = "<stdin>",
    *,
    allow_empty: bool = False,
    max_nodes: int | None = None,
) -> list[Document]:
    """Parse a (multi-document) YAML stream strictly.

    Raises :class:`ParseError` listing every problem: malformed YAML (with its line), null or
    empty documents (unless ``allow_empty``), duplicate keys, more than ``max_nodes`` nodes
    (:data:`MAX_NODES` unless given; scalars, aliases and collections; counted before anything
    is built).
    """
    _check_node_count(text, source, MAX_NODES if max_nodes is None else max_nodes)
    try:
        nodes = list(yaml.compose_all(text, Loader=_Loader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        what = exc.problem or exc.context or "malformed YAML"
        raise ParseError(
            [Problem(message=f"malformed YAML: {what}", line=line, source=source)]
        ) from None
    except yaml.YAMLError as exc:
        raise ParseError([Problem(message=f"malformed YAML: {exc}", source=source)]) from None
    except UnicodeError:
        raise ParseError([Problem(message="input is not UTF-8 text", source=source)]) from None

    texts = _split_texts(text, nodes)
    docs: list[Document] = []
    problems: list[Problem] = []
    for i, node in enumerate(nodes, start=1):
        if node is None or (
            isinstance(node, yaml.ScalarNode) and node.tag == "tag:yaml.org,2002:null"
        ):
            if not allow_empty:
                line = node.start_mark.line + 1 if node is not None else None
                problems.append(
                    Problem(
                        message="document is empty (null)", line=line, source=source, document=i
                    )
                )
            continue
        builder = _Builder(source, i)
        try:
            data = builder.build(node, ())
        except _BoundError as exc:
            raise ParseError(
                [Problem(message=exc.message, line=exc.line, source=source, document=i)]
            ) from None
        problems.extend(builder.problems)
        docs.append(Document(data, builder.lines, source, i, texts[i - 1]))
    if not nodes and not allow_empty:
        problems.append(Problem(message="no YAML document in the input", source=source))
    if problems:
        raise ParseError(problems)
    return docs


def _split_texts(text: str, nodes: list[Any]) -> list[str]:
    """Each document's own slice of the input, so pass-through can be byte-exact."""
    if len(nodes) <= 1:
        return [text] * len(nodes)
    starts = [0]
    for m in re.finditer(r"(?m)^---(?=\s|$)", text):
        if m.start() != 0:
            starts.append(m.start())
    if len(starts) != len(nodes):  # directives or odd spacing: fall back to the whole text
        return [text] * len(nodes)
    ends = [*starts[1:], len(text)]
    return [text[s:e] for s, e in zip(starts, ends, strict=True)]


def load_one(text: str, source: str = "<stdin>") -> Document:
    """Exactly one non-empty document."""
    docs = load_documents(text, source)
    if len(docs) != 1:
        raise ParseError(
            [Problem(message=f"expected one YAML document, found {len(docs)}", source=source)]
        )
    return docs[0]


class _BlockDumper(_Dumper):  # type: ignore[misc,valid-type]
    def ignore_aliases(self, data: Any) -> bool:
        return True


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.ScalarNode:
    style = "|" if "\n" in data else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", data, style=style)


_BlockDumper.add_representer(str, _str_representer)


def dump(data: Any) -> str:
    """One YAML document, block style, 4-space indent, keys in insertion order."""
    return yaml.dump(
        data,
        Dumper=_BlockDumper,
        default_flow_style=False,
        sort_keys=False,
        indent=4,
        allow_unicode=True,
        width=1_000_000,
    )


def dump_all(documents: list[Any]) -> str:
    return "---\n".join(dump(d) for d in documents)


def iter_paths(data: Any, prefix: Path = ()) -> Iterator[Path]:
    """Every key path in a nested value (used by tests and diffing)."""
    yield prefix
    if isinstance(data, dict):
        for k, v in data.items():
            yield from iter_paths(v, (*prefix, k))
    elif isinstance(data, list):
        for i, v in enumerate(data):
            yield from iter_paths(v, (*prefix, i))


def join_documents(texts: list[str]) -> str:
    """Join already-encoded documents into one stream (``---`` between them)."""
    parts = [t if t.endswith("\n") else t + "\n" for t in texts]
    return "---\n".join(parts)
