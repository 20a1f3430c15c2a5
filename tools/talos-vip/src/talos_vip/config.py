"""Reading the VIP from a machine config: the one place that knows the config's shape.

The document goes through libtalos's v1alpha1 loader (strict: unknown keys, wrong types,
duplicates and malformed YAML are errors naming key path and line, all reported at once). From
the model only ``machine.network.interfaces[].vip.ip``, the interface it sits on, and the host
name are taken; the VIP's syntax is checked here, with the line it is on.
"""

from __future__ import annotations

from dataclasses import dataclass

from libtalos.errors import Problem, TalosError, ValidationError
from talos_vip.apply import parse_vip
from talos_vip.arp import IPAddress


@dataclass(frozen=True)
class ConfiguredVIP:
    interface: str
    ip: IPAddress
    hostname: str | None


def vips_from_config(text: str, source: str) -> list[ConfiguredVIP]:
    """Every ``interfaces[].vip`` in a v1alpha1 machine config (possibly none)."""
    from libtalos.config import load

    loaded = load(text, source)
    doc = loaded.document
    network = loaded.config.machine.network
    if network is None:
        return []
    problems: list[Problem] = []
    out: list[ConfiguredVIP] = []
    for i, dev in enumerate(network.interfaces):
        if dev.vip is None:
            continue
        path: tuple[str | int, ...] = ("machine", "network", "interfaces", i)
        if not dev.vip.ip:
            problems.append(doc.problem((*path, "vip", "ip"), "is required"))
            continue
        if not dev.interface:
            problems.append(doc.problem((*path, "interface"), "must name the interface of the VIP"))
            continue
        try:
            ip = parse_vip(dev.vip.ip, what="vip.ip")
        except TalosError as exc:
            problems.append(doc.problem((*path, "vip", "ip"), str(exc).removeprefix("vip.ip: ")))
            continue
        out.append(ConfiguredVIP(dev.interface, ip, network.hostname or None))
    if problems:
        raise ValidationError(problems)
    return out
