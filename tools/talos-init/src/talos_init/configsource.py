"""Where the machine config comes from, and how it is kept (the one module handling config).

Order (TALOS-FACTS §7.2/§7.3): the ``talos.config=URL`` kernel parameter (or ``--config``), then
the config persisted in STATE (``/system/state/config.yaml``), else maintenance mode, which waits
for a config (the API issue delivers one; until then a file dropped into STATE as
``apply-config.yaml`` is the documented way).

A config is loaded and validated by the v1alpha1 model of ``libtalos.config`` (strict: unknown
keys, wrong types, and ``talosctl validate``'s rules for the node's mode, each problem with its
line); then the parts talos-init applies itself are picked out here (``machine.type``,
``machine.network.hostname`` and ``interfaces``, ``machine.files``, ``machine.sysctls``).
"""

from __future__ import annotations

import contextlib
import gzip
import ipaddress
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

from libtalos.errors import DocumentError, Problem, TalosError, ValidationError
from libtalos.fsutil import SECRET_MODE, atomic_write
from libtalos.names import hostname_problem
from libtalos.yamlio import Document

CONFIG_NAME = "config.yaml"
DROP_NAME = "apply-config.yaml"
FETCH_TIMEOUT = 70.0  # Talos's bound on fetching talos.config
MACHINE_TYPES = ("init", "controlplane", "join", "worker")
FILE_OPS = ("create", "append", "overwrite")


class ConfigFetchError(TalosError):
    """The config could not be fetched from its URL (the message names the URL, not the data)."""


@dataclass(frozen=True)
class MachineFile:
    path: str
    content: str
    permissions: int
    op: str


@dataclass(frozen=True)
class Route:
    network: str  # CIDR
    gateway: str | None
    metric: int | None


@dataclass(frozen=True)
class Interface:
    index: int  # position in machine.network.interfaces, for messages
    name: str
    addresses: tuple[str, ...]  # CIDRs (v0.9 ``cidr``, v1.x ``addresses``)
    routes: tuple[Route, ...]
    mtu: int | None
    ignore: bool


@dataclass(frozen=True)
class MachineConfig:
    text: str
    source: str
    machine_type: str
    hostname: str | None = None
    files: tuple[MachineFile, ...] = ()
    sysctls: dict[str, str] = field(default_factory=dict)
    interfaces: tuple[Interface, ...] = ()
    warnings: tuple[str, ...] = ()  # validation warnings, rendered
    data: Any = None


def parse(text: str, source: str, mode: str = "container") -> MachineConfig:
    """Load, validate for ``mode`` and pick out what talos-init applies.

    Raises :class:`DocumentError` naming the source, key and line of every problem.
    """
    from libtalos.config import load, validate

    loaded = load(text, source)
    result = validate(loaded.config, mode)
    if result.errors:
        raise ValidationError(result.errors)
    doc = loaded.document
    problems: list[Problem] = []
    data = doc.data
    if not isinstance(data, dict):
        raise DocumentError([doc.problem((), "the machine config must be a mapping")])
    if data.get("version") != "v1alpha1":
        problems.append(doc.problem(("version",), "must be v1alpha1"))
    machine = data.get("machine")
    if not isinstance(machine, dict):
        problems.append(doc.problem(("machine",), "missing or not a mapping"))
        raise DocumentError(problems)
    mtype = machine.get("type")
    if mtype not in MACHINE_TYPES:
        allowed = ", ".join(MACHINE_TYPES)
        problems.append(doc.problem(("machine", "type"), f"must be one of {allowed}"))
    hostname = _hostname(doc, machine, problems)
    files = _files(doc, machine.get("files"), problems)
    sysctls = _sysctls(doc, machine.get("sysctls"), problems)
    network = machine.get("network")
    interfaces = (
        _interfaces(doc, network.get("interfaces"), problems) if isinstance(network, dict) else ()
    )
    if problems:
        raise DocumentError(problems)
    warnings = tuple(p.render() for p in result.warnings)
    return MachineConfig(
        text, source, str(mtype), hostname, files, sysctls, interfaces, warnings, data
    )


def _hostname(doc: Document, machine: dict[str, Any], problems: list[Problem]) -> str | None:
    network = machine.get("network")
    if network is None:
        return None
    if not isinstance(network, dict):
        problems.append(doc.problem(("machine", "network"), "must be a mapping"))
        return None
    name = network.get("hostname")
    if name is None or name == "":  # unset, as in Talos (and as validate reads it)
        return None
    if not isinstance(name, str) or hostname_problem(name) is not None:
        problems.append(doc.problem(("machine", "network", "hostname"), "not a valid hostname"))
        return None
    return name


def _files(doc: Document, value: Any, problems: list[Problem]) -> tuple[MachineFile, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        problems.append(doc.problem(("machine", "files"), "must be a list"))
        return ()
    out = []
    for i, item in enumerate(value):
        where: tuple[str | int, ...] = ("machine", "files", i)
        if not isinstance(item, dict):
            problems.append(doc.problem(where, "must be a mapping"))
            continue
        before = len(problems)
        for key in item:
            if key not in ("content", "permissions", "path", "op"):
                problems.append(doc.problem((*where, key), "unknown key"))
        content, path, op = item.get("content"), item.get("path"), item.get("op", "create")
        perms = item.get("permissions", 0o644)
        if isinstance(perms, str) and re.fullmatch(r"0o[0-7]{1,4}", perms):
            perms = int(perms[2:], 8)  # YAML 1.2 octal, as Talos writes it (0o644)
        if not isinstance(content, str):
            problems.append(doc.problem((*where, "content"), "must be a string"))
        if not isinstance(path, str) or not path.startswith("/"):
            problems.append(doc.problem((*where, "path"), "must be an absolute path"))
        if isinstance(perms, bool) or not isinstance(perms, int) or not 0 <= perms <= 0o7777:
            problems.append(doc.problem((*where, "permissions"), "must be a file mode"))
        if op not in FILE_OPS:
            problems.append(doc.problem((*where, "op"), f"must be one of {', '.join(FILE_OPS)}"))
        if len(problems) == before:
            out.append(MachineFile(str(path), str(content), int(perms), str(op)))
    return tuple(out)


def _sysctls(doc: Document, value: Any, problems: list[Problem]) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        problems.append(doc.problem(("machine", "sysctls"), "must be a mapping"))
        return {}
    out = {}
    for key, val in value.items():
        if isinstance(val, bool) or not isinstance(val, str | int):
            problems.append(doc.problem(("machine", "sysctls", key), "must be a string"))
        elif not re.match(r"^[a-z0-9_.]+$", key):
            problems.append(doc.problem(("machine", "sysctls", key), "not a sysctl name"))
        else:
            out[key] = str(val)
    return out


def _interfaces(doc: Document, value: Any, problems: list[Problem]) -> tuple[Interface, ...]:
    """``machine.network.interfaces``: the static parts talos-init applies (not dhcp, not vip)."""
    if value is None:
        return ()
    base: tuple[str | int, ...] = ("machine", "network", "interfaces")
    if not isinstance(value, list):
        problems.append(doc.problem(base, "must be a list"))
        return ()
    out = []
    for i, item in enumerate(value):
        where = (*base, i)
        if not isinstance(item, dict):
            problems.append(doc.problem(where, "must be a mapping"))
            continue
        before = len(problems)
        name = item.get("interface")
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.@-]{1,15}", name):
            problems.append(doc.problem((*where, "interface"), "must be an interface name"))
        cidrs: list[tuple[tuple[str | int, ...], Any]] = []
        if "cidr" in item:
            cidrs.append(((*where, "cidr"), item["cidr"]))
        addresses = item.get("addresses", [])
        if not isinstance(addresses, list):
            problems.append(doc.problem((*where, "addresses"), "must be a list"))
            addresses = []
        cidrs += [((*where, "addresses", j), a) for j, a in enumerate(addresses)]
        for path, cidr in cidrs:
            if not isinstance(cidr, str) or "/" not in cidr or not _is_interface(cidr):
                problems.append(doc.problem(path, "must be an address with a prefix (CIDR)"))
        routes = []
        raw_routes = item.get("routes", [])
        if not isinstance(raw_routes, list):
            problems.append(doc.problem((*where, "routes"), "must be a list"))
            raw_routes = []
        for j, r in enumerate(raw_routes):
            rpath = (*where, "routes", j)
            if not isinstance(r, dict) or not isinstance(r.get("network"), str):
                problems.append(doc.problem(rpath, "needs a network (CIDR)"))
                continue
            if not _is_network(r["network"]):
                problems.append(doc.problem((*rpath, "network"), "must be a network (CIDR)"))
            gateway = r.get("gateway")
            if gateway is not None and not (isinstance(gateway, str) and _is_address(gateway)):
                problems.append(doc.problem((*rpath, "gateway"), "must be an IP address"))
            metric = r.get("metric")
            if metric is not None and (isinstance(metric, bool) or not isinstance(metric, int)):
                problems.append(doc.problem((*rpath, "metric"), "must be an integer"))
            routes.append(Route(r["network"], gateway, metric))
        mtu = item.get("mtu")
        if mtu is not None and (isinstance(mtu, bool) or not isinstance(mtu, int) or
                                not 68 <= mtu <= 65535):  # fmt: skip
            problems.append(doc.problem((*where, "mtu"), "must be between 68 and 65535"))
        ignore = item.get("ignore", False)
        if not isinstance(ignore, bool):
            problems.append(doc.problem((*where, "ignore"), "must be true or false"))
        if len(problems) == before:
            out.append(
                Interface(i, str(name), tuple(str(c) for _, c in cidrs), tuple(routes), mtu,
                          bool(ignore))
            )  # fmt: skip
    return tuple(out)


def _is_interface(text: str) -> bool:
    try:
        ipaddress.ip_interface(text)
    except ValueError:
        return False
    return True


def _is_network(text: str) -> bool:
    try:
        ipaddress.ip_network(text, strict=False)
    except ValueError:
        return False
    return "/" in text


def _is_address(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


# -- sources ------------------------------------------------------------------------------------


def smbios_uuid() -> str | None:
    try:
        return Path("/sys/class/dmi/id/product_uuid").read_text().strip() or None
    except OSError:
        return None


def expand_url(url: str, uuid: str | None) -> str:
    """Fill an empty ``uuid`` query parameter with the SMBIOS UUID, as Talos does.

    A malformed URL is returned as it is: :func:`fetch` reports it.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    query = parse_qsl(parts.query, keep_blank_values=True)
    if uuid and any(k == "uuid" and not v for k, v in query):
        query = [(k, uuid if k == "uuid" and not v else v) for k, v in query]
        return urlunsplit(parts._replace(query=urlencode(query)))
    return url


def fetch(url: str, timeout: float = FETCH_TIMEOUT) -> str:
    """Read a config from ``file://``, ``http://`` or ``https://`` (gzip is detected)."""
    import urllib.error  # here: urllib.request (with http.client and email) costs PID 1 MiBs
    import urllib.request

    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed '[' of an IPv6 host
        raise ConfigFetchError(f"{url}: not a valid URL") from None
    if parts.scheme == "file":
        try:
            raw = Path(parts.path).read_bytes()
        except OSError as exc:
            raise ConfigFetchError(f"{url}: cannot read: {exc.strerror}") from None
    elif parts.scheme in ("http", "https"):
        _check_http_url(url, parts)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - scheme checked above
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise ConfigFetchError(f"{url}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ConfigFetchError(f"{url}: cannot fetch: {reason}") from None
        except ValueError as exc:  # http.client.InvalidURL, an IDNA encoding failure
            raise ConfigFetchError(f"{url}: not a valid URL ({exc})") from None
    else:
        raise ConfigFetchError(f"{url}: unsupported scheme (use file://, http:// or https://)")
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError):
            raise ConfigFetchError(f"{url}: corrupt gzip data") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigFetchError(f"{url}: not UTF-8 text") from None


def _check_http_url(url: str, parts: SplitResult) -> None:
    """The host and port of an http(s) URL follow :mod:`libtalos.endpoint`'s rules."""
    from libtalos.endpoint import host_problem

    problem = host_problem(parts.hostname or "")
    if problem is None:
        try:
            port = parts.port
        except ValueError:
            problem = "has an invalid port"
        else:
            if port == 0:
                problem = "port 0 is out of range (1-65535)"
    if problem is not None:
        raise ConfigFetchError(f"{url}: not a valid URL: {problem}")


def persist(state_dir: str | Path, config: MachineConfig) -> Path:
    """Write the config into STATE atomically (temp file, fsync, rename), mode 0600."""
    return atomic_write(Path(state_dir) / CONFIG_NAME, config.text, mode=SECRET_MODE)


def load_persisted(state_dir: str | Path, mode: str = "container") -> MachineConfig | None:
    """The config kept in STATE, or ``None`` when there is none. Bad content raises."""
    path = Path(state_dir) / CONFIG_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeError) as exc:
        raise ConfigFetchError(f"{path}: cannot read: {getattr(exc, 'strerror', exc)}") from None
    return parse(text, str(path), mode)


def remove_stale_temp(state_dir: str | Path) -> int:
    """Temp files left by a write that was killed midway (``.config.yaml.PID.tmp``)."""
    count = 0
    for stale in Path(state_dir).glob(f".{CONFIG_NAME}.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()
            count += 1
    return count


def parse_cmdline(text: str) -> dict[str, str]:
    """Kernel command line ``key=value`` pairs (a bare ``key`` maps to ``""``); last one wins.

    Words after ``--`` are the init's own arguments, not kernel parameters.
    """
    out: dict[str, str] = {}
    for word in text.split():
        if word == "--":
            break
        key, _, value = word.partition("=")
        out[key] = value
    return out


def read_drop(state_dir: str | Path) -> tuple[str, str] | None:
    """A config dropped into STATE for maintenance mode: ``(text, path)``, or ``None``."""
    path = Path(state_dir) / DROP_NAME
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeError):
        return "", str(path)


def secure_mode(path: str | Path) -> int:
    return os.stat(path).st_mode & 0o777
