"""Pure helpers for the wire shape every reply shares.

The messages and proxying: docs/talos-facts.md#api-messages, #api-proxying.

Every unary reply is ``XResponse { repeated X messages = 1; }`` with ``common.Metadata metadata
= 1`` in ``X``. A proxy tags each message with the target it came from (``metadata.hostname``)
and reports a failed target as one message carrying ``metadata.error``; a client splits those
out again with :func:`split_errors`.
"""

from __future__ import annotations

import io
import tarfile
from dataclasses import dataclass
from typing import Any

from libtalos.api import API_PORT, common_pb2

NODES_KEY = "nodes"  # gRPC metadata: fan out to these targets (one-to-many)
NODE_KEY = "node"  # v1.x: forward to this one target (one-to-one)
PROXYFROM_KEY = "proxyfrom"  # set by a proxy on forwarded calls: never proxy those again


def split_target(target: str, default_port: int = API_PORT) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address -> (host, port)."""
    if target.startswith("["):
        host, _, rest = target[1:].partition("]")
        port = rest[1:]
        return host, int(port) if rest.startswith(":") and port.isdigit() else default_port
    if target.count(":") == 1:
        host, _, port = target.partition(":")
        if port.isdigit():
            return host, int(port)
    return target, default_port


@dataclass(frozen=True)
class NodeError:
    """One target's failure inside a fan-out reply."""

    node: str
    message: str
    code: int = 2  # google.rpc.Code; 2 = UNKNOWN


def tag(messages: Any, hostname: str) -> None:
    """Set ``metadata.hostname`` on each message of a reply's repeated ``messages`` field."""
    for message in messages:
        message.metadata.hostname = hostname


def error_message(reply_type: Any, node: str, text: str, code: int) -> Any:
    """A reply of ``reply_type`` holding one message that reports ``node``'s failure.

    It has the bytes of Talos's ``EmptyResponse{messages:[{metadata:{hostname, error,
    status}}]}``, so any ``XResponse`` decodes it.
    """
    empty = common_pb2.EmptyResponse()
    item = empty.messages.add()
    item.metadata.hostname = node
    item.metadata.error = text
    item.metadata.status.code = code
    item.metadata.status.message = text
    reply = reply_type()
    reply.ParseFromString(empty.SerializeToString())
    return reply


def split_errors(messages: Any) -> tuple[list[Any], list[NodeError]]:
    """The messages without ``metadata.error``, and one :class:`NodeError` per message with it."""
    ok: list[Any] = []
    errors: list[NodeError] = []
    for message in messages:
        md = message.metadata
        if md.error:
            errors.append(NodeError(md.hostname, md.error, md.status.code or 2))
        else:
            ok.append(message)
    return ok, errors


KUBECONFIG_NAME = "kubeconfig"


def kubeconfig_archive(kubeconfig: bytes, mtime: int = 0) -> bytes:
    """The Kubeconfig reply's bytes: a .tar.gz holding one file ``kubeconfig``, mode 0600."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(KUBECONFIG_NAME)
        info.size = len(kubeconfig)
        info.mode = 0o600
        info.mtime = mtime
        tar.addfile(info, io.BytesIO(kubeconfig))
    return buf.getvalue()


class ArchiveError(ValueError):
    """The Kubeconfig reply is not a .tar.gz holding ``kubeconfig``."""


MAX_KUBECONFIG = 1 << 20


def kubeconfig_from_archive(data: bytes) -> bytes:
    """The ``kubeconfig`` file out of a Kubeconfig reply (size-bounded, regular file only)."""
    try:
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
            for member in tar:
                if member.name.lstrip("./") != KUBECONFIG_NAME:
                    continue
                if not member.isfile() or member.size > MAX_KUBECONFIG:
                    raise ArchiveError("the kubeconfig entry is not a regular file of sane size")
                fh = tar.extractfile(member)
                if fh is None:
                    break
                return fh.read()
    except (tarfile.TarError, OSError, EOFError):
        raise ArchiveError("the reply is not a .tar.gz archive") from None
    raise ArchiveError("the archive holds no kubeconfig file")


def meminfo_field(name: str) -> str:
    """``machine.MemInfo``'s field for a /proc/meminfo name: ``Active(anon)`` -> ``activeanon``,
    ``HugePages_Total`` -> ``hugepagestotal``."""
    return name.lower().replace("(", "").replace(")", "").replace("_", "")
