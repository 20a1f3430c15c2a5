"""The client configuration (talosconfig): contexts of endpoints, nodes and credentials.

Shape (docs/talos-facts.md#talosconfig)::

    context: demo
    contexts:
        demo:
            endpoints: [10.5.0.2]
            nodes: [10.5.0.2]        # omitted when empty
            ca: <base64 of PEM>
            crt: <base64 of PEM>
            key: <base64 of PEM>

Loading is strict (unknown keys, wrong types, bad base64 name the key and line); the legacy
``target`` key is accepted and moved into ``endpoints`` as Talos does. Endpoints are checked
(:mod:`libtalos.endpoint`) when a context's are used (:meth:`TalosConfig.endpoints_of`), so that a
file with a bad one can still be repaired with ``config endpoint``. Saving is atomic and 0600
in a 0700 directory: the file holds the admin key.
"""

from __future__ import annotations

import base64
import binascii
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from libtalos import yamlio
from libtalos.endpoint import EndpointError, parse_address
from libtalos.errors import Problem, TalosError, TalosIOError, UsageError, ValidationError
from libtalos.fsutil import SECRET_MODE, atomic_write

_CONTEXT_KEYS = {"endpoints", "nodes", "ca", "crt", "key", "target"}
_B64_KEYS = ("ca", "crt", "key")


@dataclass
class Context:
    endpoints: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    ca: str = ""  # base64 of PEM
    crt: str = ""
    key: str = ""

    def to_data(self) -> dict[str, Any]:
        out: dict[str, Any] = {"endpoints": list(self.endpoints)}
        if self.nodes:
            out["nodes"] = list(self.nodes)
        out["ca"] = self.ca
        out["crt"] = self.crt
        out["key"] = self.key
        return out


@dataclass
class TalosConfig:
    context: str = ""
    contexts: dict[str, Context] = field(default_factory=dict)

    def to_data(self) -> dict[str, Any]:
        return {
            "context": self.context,
            "contexts": {name: ctx.to_data() for name, ctx in self.contexts.items()},
        }

    def to_yaml(self) -> str:
        return yamlio.dump(self.to_data())

    def current(self, name: str | None = None) -> Context:
        """The context named ``name`` (default: the current one)."""
        wanted = name or self.context
        if not wanted:
            raise TalosError("talosconfig has no current context", hint="use 'config context NAME'")
        try:
            return self.contexts[wanted]
        except KeyError:
            raise TalosError(f"context {wanted!r} is not defined in the talosconfig") from None

    def endpoints_of(self, name: str | None = None, source: str = "talosconfig") -> list[str]:
        """The endpoints of context ``name`` (default: the current one), each checked.

        A malformed endpoint raises :class:`ValidationError` naming ``source`` (the file), the
        context and the endpoint's index: the file is wrong, not the command line.
        """
        wanted = name or self.context
        ctx = self.current(name)
        problems = []
        for i, value in enumerate(ctx.endpoints):
            try:
                parse_address(value, what="endpoint")
            except EndpointError as exc:
                path = f"contexts.{wanted}.endpoints[{i}]"
                problems.append(Problem(str(exc), path=path, source=source))
        if problems:
            raise ValidationError(
                problems,
                hint="fix them with 'config endpoint HOST[:PORT]...' or pass -e/--endpoints",
            )
        return list(ctx.endpoints)

    def use(self, name: str) -> None:
        if name not in self.contexts:
            raise UsageError(f"context {name!r} is not defined in the talosconfig")
        self.context = name

    def merge(self, other: TalosConfig) -> list[str]:
        """Copy every context of ``other`` into this config, renaming clashes ``name-1``, …

        The current context becomes the (renamed) current context of ``other``. Returns one
        message per rename, worded as talosctl reports them.
        """
        messages: list[str] = []
        mapping: dict[str, str] = {}
        for name, ctx in other.contexts.items():
            new = name
            i = 1
            while new in self.contexts:
                new = f"{name}-{i}"
                i += 1
            if new != name:
                messages.append(f'renamed talosconfig context "{name}" -> "{new}"')
            mapping[name] = new
            self.contexts[new] = Context(
                list(ctx.endpoints), list(ctx.nodes), ctx.ca, ctx.crt, ctx.key
            )
        if other.context:
            self.context = mapping.get(other.context, other.context)
        return messages


def loads(text: str, source: str = "<stdin>") -> TalosConfig:
    """Strictly parse a talosconfig; every problem is reported at once."""
    docs = yamlio.load_documents(text, source, allow_empty=True)
    if not docs:
        return TalosConfig()
    if len(docs) > 1:
        raise ValidationError(
            [Problem(f"expected one YAML document, found {len(docs)}", source=source)]
        )
    doc = docs[0]
    data = doc.data
    problems: list[Problem] = []
    cfg = TalosConfig()
    if not isinstance(data, dict):
        raise ValidationError([doc.problem((), "talosconfig must be a mapping")])
    for key in data:
        if key not in ("context", "contexts"):
            problems.append(doc.problem((key,), "unknown key"))
    current = data.get("context", "")
    if current is None:
        current = ""
    if not isinstance(current, str):
        problems.append(doc.problem(("context",), "must be a string"))
    else:
        cfg.context = current
    contexts = data.get("contexts") or {}
    if not isinstance(contexts, dict):
        problems.append(doc.problem(("contexts",), "must be a mapping of context names"))
        contexts = {}
    for name, raw in contexts.items():
        path: yamlio.Path = ("contexts", name)
        if raw is not None and not isinstance(raw, dict):
            problems.append(doc.problem(path, "must be a mapping"))
            continue
        ctx = Context()
        for key, value in (raw or {}).items():
            kpath = (*path, key)
            if key not in _CONTEXT_KEYS:
                problems.append(doc.problem(kpath, "unknown key"))
            elif key in ("endpoints", "nodes"):
                items = [] if value is None else value
                if not isinstance(items, list) or not all(isinstance(v, str) for v in items):
                    problems.append(doc.problem(kpath, "must be a list of strings"))
                else:
                    setattr(ctx, key, list(items))
            elif key == "target":
                if not isinstance(value, str):
                    problems.append(doc.problem(kpath, "must be a string"))
                elif value and value not in ctx.endpoints:
                    ctx.endpoints.append(value)  # legacy key: moved into endpoints
            else:
                text = "" if value is None else value
                if not isinstance(text, str):
                    problems.append(doc.problem(kpath, "must be a string (base64 of PEM)"))
                    continue
                try:
                    base64.b64decode(text, validate=True)
                except (binascii.Error, ValueError):
                    problems.append(doc.problem(kpath, "is not valid base64"))
                    continue
                setattr(ctx, key, text)
        cfg.contexts[str(name)] = ctx
    if cfg.context and cfg.context not in cfg.contexts and not problems:
        problems.append(doc.problem(("context",), "names a context that is not defined"))
    if problems:
        raise ValidationError(problems)
    return cfg


def check_context_name(name: str, what: str = "context name") -> None:
    """A context name must be non-empty and printable: a blank one cannot be selected."""
    if not name.strip():
        raise UsageError(f"{what} must not be empty or only whitespace")
    if any(not ch.isprintable() for ch in name):
        raise UsageError(f"{what} {name!r} contains a control character")


def check_endpoints(endpoints: list[str], what: str) -> list[str]:
    """Each endpoint parsed (host, host:port, [v6]:port); a bad one is a usage error."""
    for value in endpoints:
        parse_address(value, what=what)
    return list(endpoints)


def default_path(explicit: str | None = None) -> Path:
    """``--talosconfig`` if given, else ``$TALOSCONFIG``, else ``~/.talos/config``."""
    if explicit:
        return Path(explicit)
    env = os.environ.get("TALOSCONFIG")
    if env:
        return Path(env)
    return Path.home() / ".talos" / "config"


def load(path: Path) -> TalosConfig:
    """Load a talosconfig file; a missing file is an empty config (as talosctl's ``Open``)."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return TalosConfig()
    except OSError as exc:
        raise TalosIOError(f"{path}: cannot read: {exc.strerror}") from None
    return loads(decode_text(data, str(path)), str(path))


def decode_text(data: bytes, source: str) -> str:
    """The text of a config file: UTF-8 without NUL bytes, else an error naming ``source``."""
    if b"\0" in data:
        raise TalosIOError(f"{source}: not a text file (contains NUL bytes)")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TalosIOError(f"{source}: not UTF-8 text (bad byte at offset {exc.start})") from None


def save(cfg: TalosConfig, path: Path, *, force: bool = True) -> None:
    """Write atomically, 0600, creating the parent directory 0700 if needed."""
    if not path.parent.exists():
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    atomic_write(path, cfg.to_yaml(), mode=SECRET_MODE, force=force)


def for_cluster(
    name: str, endpoints: list[str], ca_pem: bytes, crt_pem: bytes, key_pem: bytes
) -> TalosConfig:
    """The talosconfig ``gen config`` writes: one context named after the cluster."""
    enc = base64.b64encode
    ctx = Context(
        endpoints=list(endpoints),
        ca=enc(ca_pem).decode(),
        crt=enc(crt_pem).decode(),
        key=enc(key_pem).decode(),
    )
    return TalosConfig(context=name, contexts={name: ctx})
