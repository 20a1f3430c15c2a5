"""Printing results: tables for people (a NODE column when nodes are known), YAML/JSON for
scripts, per-node errors on stderr with a non-zero exit."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from libtalos import yamlio
from libtalos.errors import TalosError
from talos_apply.options import OutputFormat

if TYPE_CHECKING:
    from libtalos.api.wire import NodeError


class NodesFailedError(TalosError):
    """At least one node reported an error (each was printed)."""


def to_data(message: Any) -> dict[str, Any]:
    from google.protobuf.json_format import MessageToDict

    data: dict[str, Any] = MessageToDict(message, preserving_proto_field_name=True)
    return data


def node_of(message: Any) -> str:
    return str(message.metadata.hostname)


def table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [len(h) for h in headers]
    for row in rows:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    lines = [
        "   ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [list(headers), *rows]
    ]
    return "\n".join(lines) + "\n"


def emit_structured(messages: Sequence[Any], fmt: OutputFormat) -> bool:
    """Print the messages as YAML or JSON; False when ``fmt`` is the table."""
    if fmt is OutputFormat.table:
        return False
    items = [to_data(m) for m in messages]
    if fmt is OutputFormat.json:
        sys.stdout.write(json.dumps(items, indent=2) + "\n")
    else:
        sys.stdout.write(yamlio.dump(items))
    return True


def report_errors(errors: Sequence[NodeError]) -> None:
    """Print each node's error to stderr; raise :class:`NodesFailedError` when there is any."""
    for e in errors:
        sys.stderr.write(f"error: {e.node or '<endpoint>'}: {e.message}\n")
    if errors:
        raise NodesFailedError(
            f"{len(errors)} node{'s' if len(errors) != 1 else ''} failed",
        )
