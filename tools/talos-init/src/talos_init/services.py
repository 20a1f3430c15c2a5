"""Service definitions: the model the supervisor runs, and extension services from YAML.

An extension service is one YAML document per file in the ``--services-dir`` directory::

    name: hello                      # required: [a-z0-9][a-z0-9-]*, unique
    command: /usr/bin/hello          # required: program (looked up in PATH without a slash)
    args: [--port, "8080"]           # optional list of strings
    environment: {KEY: value}        # optional mapping (or a list of KEY=value strings)
    depends:                         # optional: what must hold before the service starts
      - other-service                #   a service that is up (same as {service: other-service})
      - path: /var/lib/ready         #   a path that exists
      - network: true                #   the node's network is configured
    restart: always                  # always (default), until-success, never
    # project extensions, all optional:
    preStart: [/usr/bin/prepare]     # a command run to success before each start
    healthCheck:                     # exactly one of tcp / http / command
      tcp: 127.0.0.1:8080            # or http: http://127.0.0.1:8080/healthz, command: [argv]
      initialDelay: 1s               # durations: seconds as a number, or "250ms", "5s", "1m"
      period: 5s
      timeout: 500ms
    restartDelay: 5s                 # first back-off; doubles on each consecutive failure
    stopGrace: 10s                   # SIGTERM, then SIGKILL after this long
    forwardSignals: [SIGHUP]         # signals to PID 1 passed on (SIGHUP, SIGUSR1, SIGUSR2)

Loading is strict: unknown keys, wrong types and duplicates are problems naming the file, the
key and the line. A bad file is left out and reported; the other services still run. The same
holds for an entry named ``*.yaml`` that is not a regular file (a directory, a FIFO), and for a
service whose dependency is not there: not defined by any file, rejected, part of a cycle, or
itself left out; the problem names the dependency (and the cycle) on the ``depends`` item's line.
"""

from __future__ import annotations

import os
import re
import signal
import stat
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from libtalos.errors import DocumentError, Problem
from libtalos.yamlio import Document, load_one

RESTART_POLICIES = ("always", "until-success", "never")
FORWARDABLE = {"SIGHUP": signal.SIGHUP, "SIGUSR1": signal.SIGUSR1, "SIGUSR2": signal.SIGUSR2}
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)$")

# Talos's defaults (docs/talos-facts.md#service-supervisor).
DEFAULT_RESTART_DELAY = 5.0
DEFAULT_STOP_GRACE = 10.0
DEFAULT_HEALTH_DELAY = 1.0
DEFAULT_HEALTH_PERIOD = 5.0
DEFAULT_HEALTH_TIMEOUT = 0.5
MAX_SERVICE_FILE = 1 << 20  # bytes; a service file is a few hundred
SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class HealthCheck:
    kind: str  # "tcp", "http" or "command"
    target: str = ""  # host:port for tcp, URL for http
    command: tuple[str, ...] = ()
    initial_delay: float = DEFAULT_HEALTH_DELAY
    period: float = DEFAULT_HEALTH_PERIOD
    timeout: float = DEFAULT_HEALTH_TIMEOUT


@dataclass(frozen=True)
class ServiceSpec:
    id: str
    argv: tuple[str, ...]
    environment: dict[str, str] = field(default_factory=dict)
    depends_services: tuple[str, ...] = ()
    depends_paths: tuple[str, ...] = ()
    depends_network: bool = False
    pre_start: tuple[str, ...] = ()
    restart: str = "always"
    restart_delay: float = DEFAULT_RESTART_DELAY
    stop_grace: float = DEFAULT_STOP_GRACE
    health: HealthCheck | None = None
    forward_signals: frozenset[int] = frozenset()
    source: str = ""  # the file it came from, for messages


class _Checker:
    """Collects every problem of one document, each with its key path and line."""

    def __init__(self, doc: Document) -> None:
        self.doc = doc
        self.problems: list[Problem] = []

    def add(self, path: tuple[str | int, ...], message: str) -> None:
        self.problems.append(self.doc.problem(path, message))

    def string(self, value: Any, path: tuple[str | int, ...]) -> str | None:
        if isinstance(value, str) and value:
            return value
        self.add(path, "must be a non-empty string")
        return None

    def strings(self, value: Any, path: tuple[str | int, ...]) -> list[str]:
        if not isinstance(value, list):
            self.add(path, "must be a list of strings")
            return []
        out = []
        for i, item in enumerate(value):
            if isinstance(item, bool) or not isinstance(item, str | int | float):
                self.add((*path, i), "must be a string")
            else:
                out.append(str(item))
        return out

    def duration(self, value: Any, path: tuple[str | int, ...]) -> float | None:
        if isinstance(value, bool):
            self.add(path, "must be a duration such as 500ms, 5s or 1m")
            return None
        if isinstance(value, int | float) and value >= 0:
            return float(value)
        if isinstance(value, str):
            m = _DURATION.match(value)
            if m:
                scale = {"ms": 0.001, "s": 1.0, "m": 60.0}[m.group(2)]
                return float(m.group(1)) * scale
        self.add(path, "must be a duration such as 500ms, 5s or 1m")
        return None


_KEYS = {
    "name",
    "command",
    "args",
    "environment",
    "depends",
    "restart",
    "preStart",
    "healthCheck",
    "restartDelay",
    "stopGrace",
    "forwardSignals",
}
_HEALTH_KEYS = {"tcp", "http", "command", "initialDelay", "period", "timeout"}


def parse_service(doc: Document) -> ServiceSpec:
    """Build a :class:`ServiceSpec` from one document or raise :class:`DocumentError`."""
    c = _Checker(doc)
    data = doc.data
    if not isinstance(data, dict):
        c.add((), "a service must be a mapping")
        raise DocumentError(c.problems)
    for key in data:
        if key not in _KEYS:
            c.add((key,), f"unknown key (allowed: {', '.join(sorted(_KEYS))})")
    for key in ("name", "command"):
        if key not in data:
            c.add((), f"missing required key {key!r}")
    name = c.string(data["name"], ("name",)) if "name" in data else None
    if name is not None and not _NAME.match(name):
        c.add(("name",), "must be lowercase letters, digits and '-', at most 63 characters")
    command = c.string(data["command"], ("command",)) if "command" in data else None
    args = c.strings(data["args"], ("args",)) if "args" in data else []
    env = _environment(c, data.get("environment"))
    services, paths, network = _depends(c, data.get("depends"))
    restart = data.get("restart", "always")
    if restart not in RESTART_POLICIES:
        c.add(("restart",), f"must be one of {', '.join(RESTART_POLICIES)}")
    pre = c.strings(data["preStart"], ("preStart",)) if "preStart" in data else []
    if "preStart" in data and not pre:
        c.add(("preStart",), "must be a non-empty list (the command and its arguments)")
    health = _health(c, data["healthCheck"]) if "healthCheck" in data else None
    delay = c.duration(data["restartDelay"], ("restartDelay",)) if "restartDelay" in data else None
    grace = c.duration(data["stopGrace"], ("stopGrace",)) if "stopGrace" in data else None
    forward: set[int] = set()
    for i, sig in enumerate(
        c.strings(data["forwardSignals"], ("forwardSignals",)) if "forwardSignals" in data else []
    ):
        if sig in FORWARDABLE:
            forward.add(FORWARDABLE[sig])
        else:
            c.add(("forwardSignals", i), f"must be one of {', '.join(FORWARDABLE)}")
    if name is not None and name in services:
        c.add(("depends",), "a service cannot depend on itself")
    if c.problems or name is None or command is None:
        raise DocumentError(c.problems)
    return ServiceSpec(
        id=name,
        argv=(command, *args),
        environment=env,
        depends_services=tuple(services),
        depends_paths=tuple(paths),
        depends_network=network,
        pre_start=tuple(pre),
        restart=str(restart),
        restart_delay=DEFAULT_RESTART_DELAY if delay is None else delay,
        stop_grace=DEFAULT_STOP_GRACE if grace is None else grace,
        health=health,
        forward_signals=frozenset(forward),
        source=doc.source,
    )


def _environment(c: _Checker, value: Any) -> dict[str, str]:
    env: dict[str, str] = {}
    if value is None:
        return env
    if isinstance(value, dict):
        for k, v in value.items():
            if isinstance(v, bool) or not isinstance(v, str | int | float):
                c.add(("environment", k), "must be a string")
            else:
                env[k] = str(v)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            if not isinstance(item, str) or "=" not in item or item.startswith("="):
                c.add(("environment", i), "must be a KEY=value string")
            else:
                k, _, v = item.partition("=")
                env[k] = v
    else:
        c.add(("environment",), "must be a mapping or a list of KEY=value strings")
    return env


def _depends(c: _Checker, value: Any) -> tuple[list[str], list[str], bool]:
    services: list[str] = []
    paths: list[str] = []
    network = False
    if value is None:
        return services, paths, network
    if not isinstance(value, list):
        c.add(("depends",), "must be a list")
        return services, paths, network
    for i, item in enumerate(value):
        where: tuple[str | int, ...] = ("depends", i)
        if isinstance(item, str):
            if _NAME.match(item):
                services.append(item)
            else:
                c.add(where, f"{item!r} is not a service name (lowercase letters, digits, '-')")
        elif isinstance(item, dict) and len(item) == 1:
            ((kind, target),) = item.items()
            if kind == "service":
                s = c.string(target, (*where, kind))
                if s and not _NAME.match(s):
                    c.add((*where, kind), f"{s!r} is not a service name")
                elif s:
                    services.append(s)
            elif kind == "path":
                p = c.string(target, (*where, kind))
                if p and not p.startswith("/"):
                    c.add((*where, kind), "must be an absolute path")
                elif p:
                    paths.append(p)
            elif kind == "network":
                if target is not True:
                    c.add((*where, kind), "must be true")
                network = True
            else:
                c.add((*where, kind), "unknown dependency kind (allowed: service, path, network)")
        else:
            c.add(where, "must be a service name or a mapping with one of: service, path, network")
    return services, paths, network


def _health(c: _Checker, value: Any) -> HealthCheck | None:
    if not isinstance(value, dict):
        c.add(("healthCheck",), "must be a mapping")
        return None
    for key in value:
        if key not in _HEALTH_KEYS:
            c.add(("healthCheck", key), f"unknown key (allowed: {', '.join(sorted(_HEALTH_KEYS))})")
    kinds = [k for k in ("tcp", "http", "command") if k in value]
    if len(kinds) != 1:
        c.add(("healthCheck",), "needs exactly one of tcp, http, command")
        return None
    kind = kinds[0]
    path: tuple[str | int, ...] = ("healthCheck", kind)
    target = ""
    command: tuple[str, ...] = ()
    if kind == "tcp":
        target = c.string(value[kind], path) or ""
        host, _, port = target.rpartition(":")
        if target and (not host or not port.isdigit() or not 0 < int(port) < 65536):
            c.add(path, "must be HOST:PORT")
    elif kind == "http":
        target = c.string(value[kind], path) or ""
        if target and not target.startswith("http://"):
            c.add(path, "must be an http:// URL")
    else:
        command = tuple(c.strings(value[kind], path))
        if not command:
            c.add(path, "must be a non-empty list (the command and its arguments)")
    durations: dict[str, float] = {}
    defaults = {
        "initialDelay": DEFAULT_HEALTH_DELAY,
        "period": DEFAULT_HEALTH_PERIOD,
        "timeout": DEFAULT_HEALTH_TIMEOUT,
    }
    for key, default in defaults.items():
        d = c.duration(value[key], ("healthCheck", key)) if key in value else default
        durations[key] = default if d is None else d
    if durations["period"] <= 0 or durations["timeout"] <= 0:
        c.add(("healthCheck",), "period and timeout must be greater than zero")
    return HealthCheck(
        kind=kind,
        target=target,
        command=command,
        initial_delay=durations["initialDelay"],
        period=durations["period"],
        timeout=durations["timeout"],
    )


def load_services_dir(directory: str | Path) -> tuple[list[ServiceSpec], list[Problem]]:
    """Every ``*.yaml``/``*.yml`` entry of ``directory`` (sorted); bad ones are reported, not fatal.

    Returns the good services and the problems. An entry that is not a regular file is a
    problem naming it; a service whose dependency is missing, rejected, in a cycle or left out
    itself is left out too, with a problem naming the dependency on its ``depends`` item.
    """
    root = Path(directory)
    specs: list[ServiceSpec] = []
    problems: list[Problem] = []
    docs: dict[str, Document] = {}
    rejected: dict[str, str] = {}  # service name -> the file that defines it badly
    try:
        paths = sorted(p for p in root.iterdir() if p.suffix in SUFFIXES)
    except OSError as exc:
        return [], [Problem(message=f"cannot read directory: {exc.strerror}", source=str(root))]
    for path in paths:
        text, problem = _read(path)
        if text is None:
            problems.append(Problem(message=problem, source=str(path)))
            continue
        try:
            doc = load_one(text, str(path))
        except DocumentError as exc:
            problems.extend(exc.problems)
            continue
        try:
            spec = parse_service(doc)
        except DocumentError as exc:
            problems.extend(exc.problems)
            name = doc.data.get("name") if isinstance(doc.data, dict) else None
            if isinstance(name, str):
                rejected.setdefault(name, str(path))
            continue
        if spec.id in docs:
            problems.append(
                doc.problem(("name",), f"duplicate service name (also in {docs[spec.id].source})")
            )
            continue
        docs[spec.id] = doc
        specs.append(spec)
    return _resolve(specs, docs, rejected, root, problems), problems


def _read(path: Path) -> tuple[str | None, str]:
    """The text of a service file, or None and why it cannot be one.

    Opened without blocking (a FIFO named ``x.yaml`` must not stop the boot) and checked to be
    a regular file before anything is read.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except IsADirectoryError:
        return None, _NOT_A_FILE.format(what="a directory")
    except OSError as exc:
        return None, f"cannot read: {exc.strerror}"
    try:
        mode = os.fstat(fd).st_mode
        if stat.S_ISDIR(mode):
            return None, _NOT_A_FILE.format(what="a directory")
        if not stat.S_ISREG(mode):
            return None, _NOT_A_FILE.format(what="not a regular file")
        with os.fdopen(fd, "rb", closefd=False) as fh:
            data = fh.read(MAX_SERVICE_FILE + 1)
    except OSError as exc:
        return None, f"cannot read: {exc.strerror}"
    finally:
        os.close(fd)
    if len(data) > MAX_SERVICE_FILE:
        return None, f"larger than {MAX_SERVICE_FILE} bytes: not a service file"
    try:
        return data.decode("utf-8"), ""
    except UnicodeDecodeError:
        return None, "cannot read: not UTF-8 text"


_NOT_A_FILE = "{what}, not a service file (each service is one file named *.yaml or *.yml)"


def _depends_path(doc: Document, dependency: str) -> tuple[str | int, ...]:
    """The key path of the ``depends`` item naming ``dependency`` (for its line)."""
    items = doc.data.get("depends") if isinstance(doc.data, dict) else None
    for i, item in enumerate(items if isinstance(items, list) else []):
        if item == dependency:
            return ("depends", i)
        if isinstance(item, dict) and item.get("service") == dependency:
            return ("depends", i, "service")
    return ("depends",)


def _resolve(
    specs: list[ServiceSpec],
    docs: dict[str, Document],
    rejected: dict[str, str],
    root: Path,
    problems: list[Problem],
) -> list[ServiceSpec]:
    """The services whose dependencies all start; a problem for each one left out."""
    by_id = {s.id: s for s in specs}
    out: set[str] = set()

    def leave_out(spec: ServiceSpec, dependency: str, message: str) -> None:
        out.add(spec.id)
        doc = docs[spec.id]
        problems.append(doc.problem(_depends_path(doc, dependency), message))

    # 1. a dependency no good file defines
    for spec in specs:
        for d in spec.depends_services:
            if d in by_id:
                continue
            if d in rejected:
                why = f"service {d!r} is rejected (see the problems of {rejected[d]})"
            else:
                why = f"unknown service {d!r} (no file in {root} defines it)"
            leave_out(spec, d, why)
            break
    # 2. cycles among the rest, each named from the service it is reported on
    for spec in specs:
        if spec.id in out:
            continue
        cycle = _cycle(spec.id, by_id)
        if cycle:
            leave_out(spec, cycle[1], f"dependency cycle: {' -> '.join(cycle)}")
    # 3. what depends on a service left out, until nothing changes
    changed = True
    while changed:
        changed = False
        for spec in specs:
            if spec.id in out:
                continue
            gone = next((d for d in spec.depends_services if d in out), None)
            if gone is not None:
                leave_out(spec, gone, f"service {gone!r} is left out (see its problems)")
                changed = True
    return [s for s in specs if s.id not in out]


def _cycle(start: str, by_id: dict[str, ServiceSpec]) -> list[str]:
    """A path ``start -> ... -> start`` through the dependencies; empty when there is none."""
    seen: set[str] = set()
    stack: list[tuple[str, list[str]]] = [(start, [start])]
    while stack:
        sid, path = stack.pop()
        for d in by_id[sid].depends_services:
            if d == start:
                return [*path, start]
            if d in by_id and d not in seen:
                seen.add(d)
                stack.append((d, [*path, d]))
    return []
