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
key and the line. A bad file is left out and reported; the other services still run.
"""

from __future__ import annotations

import re
import signal
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from libtalos.errors import DocumentError, Problem
from libtalos.yamlio import Document, load_one

RESTART_POLICIES = ("always", "until-success", "never")
FORWARDABLE = {"SIGHUP": signal.SIGHUP, "SIGUSR1": signal.SIGUSR1, "SIGUSR2": signal.SIGUSR2}
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m)$")

# Talos's defaults (TALOS-FACTS §7.4).
DEFAULT_RESTART_DELAY = 5.0
DEFAULT_STOP_GRACE = 10.0
DEFAULT_HEALTH_DELAY = 1.0
DEFAULT_HEALTH_PERIOD = 5.0
DEFAULT_HEALTH_TIMEOUT = 0.5


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
    "name", "command", "args", "environment", "depends", "restart",
    "preStart", "healthCheck", "restartDelay", "stopGrace", "forwardSignals",
}  # fmt: skip
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
            services.append(item)
        elif isinstance(item, dict) and len(item) == 1:
            ((kind, target),) = item.items()
            if kind == "service":
                s = c.string(target, (*where, kind))
                if s:
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
    """Every ``*.yaml``/``*.yml`` file of ``directory`` (sorted); bad files are reported, not fatal.

    Returns the good services and the problems. A service whose dependency names a service that
    does not exist is left out too, with a problem on its ``depends`` line.
    """
    root = Path(directory)
    specs: list[ServiceSpec] = []
    problems: list[Problem] = []
    docs: dict[str, Document] = {}
    try:
        files = sorted(p for p in root.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())
    except OSError as exc:
        return [], [Problem(message=f"cannot read directory: {exc.strerror}", source=str(root))]
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeError) as exc:
            reason = getattr(exc, "strerror", None) or "not UTF-8 text"
            problems.append(Problem(message=f"cannot read: {reason}", source=str(path)))
            continue
        try:
            doc = load_one(text, str(path))
            spec = parse_service(doc)
        except DocumentError as exc:
            problems.extend(exc.problems)
            continue
        if spec.id in docs:
            problems.append(
                doc.problem(("name",), f"duplicate service name (also in {docs[spec.id].source})")
            )
            continue
        docs[spec.id] = doc
        specs.append(spec)
    known = {s.id for s in specs}
    good = []
    for spec in specs:
        missing = [d for d in spec.depends_services if d not in known]
        if missing:
            problems.append(
                docs[spec.id].problem(("depends",), f"unknown service {', '.join(missing)}")
            )
        else:
            good.append(spec)
    return _drop_cycles(good, docs, problems), problems


def _drop_cycles(
    specs: list[ServiceSpec], docs: dict[str, Document], problems: list[Problem]
) -> list[ServiceSpec]:
    """Leave out services that (transitively) depend on a missing service or on a cycle."""
    by_id = {s.id: s for s in specs}
    ok: dict[str, bool] = {}

    def visit(sid: str, stack: tuple[str, ...]) -> bool:
        if sid in ok:
            return ok[sid]
        if sid in stack or sid not in by_id:
            return False
        result = all(visit(d, (*stack, sid)) for d in by_id[sid].depends_services)
        ok[sid] = result
        return result

    out = []
    for spec in specs:
        if visit(spec.id, ()):
            out.append(spec)
        else:
            problems.append(
                docs[spec.id].problem(("depends",), "dependency cycle or a dependency left out")
            )
    return out
