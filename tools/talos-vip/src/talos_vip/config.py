"""Reading the VIP from a machine config: the one place that knows the config's shape.

Only ``machine.network.interfaces[].vip.ip`` (and the interface it sits on) is read. The document
is loaded strictly (duplicate keys, malformed YAML are errors with their line); the keys on the
way to the VIP are checked for type and the VIP for syntax, each error naming its key and line.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from libtalos.errors import Problem, TalosError, ValidationError
from libtalos.yamlio import Document, load_one
from talos_vip.apply import parse_vip
from talos_vip.arp import IPAddress


@dataclass(frozen=True)
class ConfiguredVIP:
    interface: str
    ip: IPAddress
    hostname: str | None


def vips_from_config(text: str, source: str) -> list[ConfiguredVIP]:
    """Every ``interfaces[].vip`` in a v1alpha1 machine config (possibly none)."""
    doc = load_one(text, source)
    problems: list[Problem] = []
    out: list[ConfiguredVIP] = []

    def mapping(value: Any, path: tuple[str | int, ...]) -> dict[str, Any] | None:
        if value is None:
            return None
        if not isinstance(value, dict):
            problems.append(doc.problem(path, "must be a mapping"))
            return None
        return value

    root = mapping(doc.data, ())
    machine = mapping((root or {}).get("machine"), ("machine",))
    network = mapping((machine or {}).get("network"), ("machine", "network"))
    hostname = (network or {}).get("hostname")
    interfaces = (network or {}).get("interfaces")
    if interfaces is not None and not isinstance(interfaces, list):
        problems.append(doc.problem(("machine", "network", "interfaces"), "must be a list"))
        interfaces = []
    for i, item in enumerate(interfaces or []):
        path: tuple[str | int, ...] = ("machine", "network", "interfaces", i)
        dev = mapping(item, path)
        if dev is None:
            continue
        vip = mapping(dev.get("vip"), (*path, "vip"))
        if vip is None:
            continue
        _check_vip(doc, vip, dev, path, problems, out, hostname)
    if problems:
        raise ValidationError(problems)
    return out


def _check_vip(
    doc: Document,
    vip: dict[str, Any],
    dev: dict[str, Any],
    path: tuple[str | int, ...],
    problems: list[Problem],
    out: list[ConfiguredVIP],
    hostname: Any,
) -> None:
    for key in vip:
        if key not in ("ip", "equinixMetal", "hcloud"):
            problems.append(doc.problem((*path, "vip", key), "unknown key"))
    ip_text = vip.get("ip")
    if not isinstance(ip_text, str) or not ip_text:
        problems.append(doc.problem((*path, "vip", "ip"), "must be an IP address string"))
        return
    ifname = dev.get("interface")
    if not isinstance(ifname, str) or not ifname:
        problems.append(doc.problem((*path, "interface"), "must name the interface of the VIP"))
        return
    try:
        ip = parse_vip(ip_text, what="vip.ip")
    except TalosError as exc:
        problems.append(doc.problem((*path, "vip", "ip"), str(exc).removeprefix("vip.ip: ")))
        return
    out.append(
        ConfiguredVIP(ifname, ip, hostname if isinstance(hostname, str) and hostname else None)
    )
