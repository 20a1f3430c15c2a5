"""``machine.MachineService/GenerateConfiguration``: a machine config and a talosconfig made on
the node (docs/talos-facts.md#generateconfiguration).

The request carries v0.9.3's fields (cluster name, control-plane endpoint, DNS domain, CNI,
machine type, install disk and image, hostname, interfaces, Kubernetes version, a fixed clock);
the reply one ``GenerateConfiguration`` with the config in ``data[0]`` and the admin
talosconfig in ``talosconfig``. A node in maintenance mode makes a new cluster's secrets
(:func:`libtalos.pki.generate_secrets`); a configured control-plane node reuses those of its
running config, so that the config generated joins its cluster; a worker refuses (it holds no
CA keys). The config comes from :func:`libtalos.config.generate`, the generator ``talos-gen
config`` uses, and is validated before it is sent.

Every request field is checked first; a bad one is INVALID_ARGUMENT naming the field by its
proto path (``cluster_config.control_plane.endpoint``). Messages quote only what the caller sent:
the secrets appear in the reply's ``data`` and ``talosconfig`` and nowhere else.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import ipaddress
import re
from dataclasses import dataclass
from typing import Any

from grpclib import GRPCError
from grpclib.const import Status as GrpcStatus

from libtalos import config as cfgmod
from libtalos import pki
from libtalos import talosconfig as tcmod
from libtalos.api import machine_pb2
from libtalos.config.generate import endpoint_host
from libtalos.config.v1alpha1 import (
    DEFAULT_INSTALL_IMAGE,
    CNIConfig,
    Config,
    Device,
    DHCPOptions,
    NetworkConfig,
    Route,
)
from libtalos.config.validate import endpoint_problem, is_dns_name
from libtalos.secrets import CertKey, SecretsBundle

CONFIG_VERSION = "v1alpha1"
# MachineConfig.MachineType (machine.proto) -> the generator's kind
KINDS = {1: "init", 2: "controlplane", 3: "join"}
CNI_NAMES = ("flannel", "custom")
MAX_INTERFACES = 64
MAX_ROUTES = 64
MAX_TEXT = 253  # a DNS name; longer request strings are refused, not echoed
KUBERNETES_VERSION_RE = re.compile(r"v?\d{1,3}\.\d{1,3}\.\d{1,3}(?:-[0-9A-Za-z.-]{1,40})?")
INTERFACE_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,14}")  # IFNAMSIZ - 1


def _bad(field: str, why: str) -> GRPCError:
    return GRPCError(GrpcStatus.INVALID_ARGUMENT, f"{field}: {why}")


def _shown(value: str) -> str:
    """A request string as quoted in a message: printable, and cut."""
    text = value if value.isprintable() else value.encode("unicode_escape").decode("ascii")
    return repr(text if len(text) <= 80 else text[:77] + "...")


def _text(field: str, value: str) -> str:
    if len(value) > MAX_TEXT:
        raise _bad(field, f"{len(value)} characters; the limit is {MAX_TEXT}")
    if not value.isprintable():
        raise _bad(field, "control characters")
    return value


def _cidr(field: str, value: str) -> None:
    if "/" not in value:
        raise _bad(
            field, f"{_shown(value)} is not in CIDR notation (address/prefix, e.g. 10.5.0.2/24)"
        )
    try:
        ipaddress.ip_interface(value)
    except ValueError:
        raise _bad(field, f"{_shown(value)} is not a valid CIDR address") from None


def _network(field: str, value: str) -> None:
    try:
        ipaddress.ip_network(value, strict=False)
    except ValueError:
        raise _bad(field, f"{_shown(value)} is not a valid network (CIDR)") from None
    if "/" not in value:
        raise _bad(field, f"{_shown(value)} is not in CIDR notation (e.g. 0.0.0.0/0)")


def _ip(field: str, value: str) -> None:
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise _bad(field, f"{_shown(value)} is not an IP address") from None


@dataclass(frozen=True)
class Checked:
    """A request's fields, checked."""

    kind: str
    cluster_name: str
    endpoint: str
    dns_domain: str
    cni: CNIConfig | None
    allow_scheduling_on_masters: bool
    install_disk: str
    install_image: str
    kubernetes_version: str | None
    network: NetworkConfig | None
    clock: pki.Clock | None


def _device(field: str, d: Any) -> Device:
    name = _text(f"{field}.interface", d.interface)
    if not INTERFACE_RE.fullmatch(name):
        raise _bad(f"{field}.interface", f"{_shown(name)} is not an interface name")
    if d.cidr:
        _cidr(f"{field}.cidr", _text(f"{field}.cidr", d.cidr))
        if d.dhcp:
            raise _bad(f"{field}.cidr", "a static address and dhcp exclude each other")
    if d.mtu < 0 or d.mtu > 65535:
        raise _bad(f"{field}.mtu", f"{d.mtu} is out of range (0 to 65535)")
    if len(d.routes) > MAX_ROUTES:
        raise _bad(f"{field}.routes", f"{len(d.routes)} routes; the limit is {MAX_ROUTES}")
    routes = []
    for j, r in enumerate(d.routes):
        where = f"{field}.routes[{j}]"
        _network(f"{where}.network", _text(f"{where}.network", r.network))
        if r.gateway:
            _ip(f"{where}.gateway", _text(f"{where}.gateway", r.gateway))
        routes.append(Route(network=r.network, gateway=r.gateway, metric=r.metric))
    return Device(
        interface=name,
        cidr=d.cidr,
        mtu=d.mtu,
        dhcp=d.dhcp,
        ignore=d.ignore,
        dhcp_options=(
            DHCPOptions(route_metric=d.dhcp_options.route_metric)
            if d.HasField("dhcp_options") and d.dhcp_options.route_metric
            else None
        ),
        routes=routes,
    )


def check(req: Any) -> Checked:
    """The request's fields checked (INVALID_ARGUMENT naming the first bad field)."""
    if req.config_version != CONFIG_VERSION:
        raise _bad(
            "config_version",
            f"unsupported config version {_shown(req.config_version)} (supported: v1alpha1)",
        )
    if not req.HasField("machine_config"):
        raise _bad("machine_config", "is required")
    if not req.HasField("cluster_config"):
        raise _bad("cluster_config", "is required")
    if not req.cluster_config.HasField("control_plane"):
        raise _bad("cluster_config.control_plane", "is required")
    mc, cc = req.machine_config, req.cluster_config
    kind = KINDS.get(mc.type)
    if kind is None:
        raise _bad(
            "machine_config.type",
            f"unknown machine type {mc.type} (1 init, 2 controlplane, 3 join)",
        )
    name = _text("cluster_config.name", cc.name)
    if not name:
        raise _bad("cluster_config.name", "must not be empty")
    endpoint = _text("cluster_config.control_plane.endpoint", cc.control_plane.endpoint)
    problem = endpoint_problem(endpoint)
    if problem is not None:
        raise _bad(
            "cluster_config.control_plane.endpoint",
            f"{_shown(endpoint)}: {problem} (e.g. https://10.5.0.2:6443)",
        )
    dns_domain = "cluster.local"
    cni: CNIConfig | None = None
    if cc.HasField("cluster_network"):
        net = cc.cluster_network
        if net.dns_domain:
            dns_domain = _text("cluster_config.cluster_network.dns_domain", net.dns_domain)
            if not is_dns_name(dns_domain):
                raise _bad(
                    "cluster_config.cluster_network.dns_domain",
                    f"{_shown(dns_domain)} is not a valid DNS name",
                )
        if net.HasField("cni_config"):
            cni_name = net.cni_config.name
            if cni_name not in CNI_NAMES:
                raise _bad(
                    "cluster_config.cluster_network.cni_config.name",
                    f"{_shown(cni_name)} is not a CNI (flannel or custom)",
                )
            urls = list(net.cni_config.urls)
            for i, url in enumerate(urls):
                if not url.startswith(("https://", "http://")):
                    raise _bad(
                        f"cluster_config.cluster_network.cni_config.urls[{i}]",
                        f"{_shown(url)} is not an http(s) URL",
                    )
            if cni_name == "custom" and not urls:
                raise _bad("cluster_config.cluster_network.cni_config.urls", "custom needs a URL")
            cni = CNIConfig(name=cni_name, urls=urls)
    install_disk = "/dev/sda"
    install_image = DEFAULT_INSTALL_IMAGE
    if mc.HasField("install_config"):
        ic = mc.install_config
        if ic.install_disk:
            install_disk = _text("machine_config.install_config.install_disk", ic.install_disk)
            if not re.fullmatch(r"/dev/[A-Za-z0-9._/-]+", install_disk):
                raise _bad(
                    "machine_config.install_config.install_disk",
                    f"{_shown(install_disk)} is not a device path (/dev/...)",
                )
        if ic.install_image:
            install_image = _text("machine_config.install_config.install_image", ic.install_image)
    version = mc.kubernetes_version or None
    if version is not None and not KUBERNETES_VERSION_RE.fullmatch(version):
        raise _bad(
            "machine_config.kubernetes_version", f"{_shown(version)} is not a version (e.g. 1.20.5)"
        )
    if version is not None:
        version = version.removeprefix("v")
    network: NetworkConfig | None = None
    if mc.HasField("network_config"):
        nc = mc.network_config
        hostname = _text("machine_config.network_config.hostname", nc.hostname)
        if hostname and not is_dns_name(hostname):
            raise _bad(
                "machine_config.network_config.hostname", f"{_shown(hostname)} is not a host name"
            )
        if len(nc.interfaces) > MAX_INTERFACES:
            raise _bad(
                "machine_config.network_config.interfaces",
                f"{len(nc.interfaces)} interfaces; the limit is {MAX_INTERFACES}",
            )
        devices = [
            _device(f"machine_config.network_config.interfaces[{i}]", d)
            for i, d in enumerate(nc.interfaces)
        ]
        seen: set[str] = set()
        for i, dev in enumerate(devices):
            if dev.interface in seen:
                raise _bad(
                    f"machine_config.network_config.interfaces[{i}].interface",
                    f"{_shown(dev.interface)} is configured twice",
                )
            seen.add(dev.interface)
        network = NetworkConfig(hostname=hostname, interfaces=devices)
    clock: pki.Clock | None = None
    if req.HasField("override_time"):
        clock = pki.FixedClock(req.override_time.ToDatetime(tzinfo=dt.UTC))
    return Checked(
        kind=kind,
        cluster_name=name,
        endpoint=endpoint,
        dns_domain=dns_domain,
        cni=cni,
        allow_scheduling_on_masters=cc.allow_scheduling_on_masters,
        install_disk=install_disk,
        install_image=install_image,
        kubernetes_version=version,
        network=network,
        clock=clock,
    )


def _unb64(value: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return b""


def bundle_from_config(cfg: Config) -> SecretsBundle:
    """The secrets a control-plane config carries, as a bundle (for configs of its cluster)."""
    m, c = cfg.machine, cfg.cluster
    if m.ca is None or not m.ca.key or c is None or c.ca is None or not c.ca.key:
        raise GRPCError(
            GrpcStatus.FAILED_PRECONDITION, "the running config holds no CA keys to generate with"
        )

    def pair(ck: Any) -> CertKey:
        return CertKey(crt=_unb64(ck.crt), key=_unb64(ck.key))

    return SecretsBundle(
        talos_ca=pair(m.ca),
        kubernetes_ca=pair(c.ca),
        etcd_ca=pair(c.etcd.ca) if c.etcd is not None and c.etcd.ca is not None else pair(c.ca),
        aggregator_ca=pair(c.aggregator_ca) if c.aggregator_ca is not None else None,
        service_account_key=(
            _unb64(c.service_account.key) if c.service_account is not None else None
        ),
        trustd_token=m.token,
        bootstrap_token=c.token,
        aescbc_encryption_secret=c.aescbc_encryption_secret,
    )


def generate(
    checked: Checked, bundle: SecretsBundle, platform_mode: str = "container"
) -> tuple[bytes, bytes]:
    """The machine config (YAML) and the admin talosconfig of ``checked``, from ``bundle``."""
    inp = cfgmod.GenerateInput(
        cluster_name=checked.cluster_name,
        endpoint=checked.endpoint,
        kubernetes_version=checked.kubernetes_version,
        install_disk=checked.install_disk,
        install_image=checked.install_image,
        dns_domain=checked.dns_domain,
    )
    cfg = cfgmod.generate(inp, bundle)[checked.kind]
    if checked.network is not None:
        cfg.machine.network = checked.network
    if cfg.cluster is not None:
        if checked.cni is not None and cfg.cluster.network is not None:
            cfg.cluster.network.cni = checked.cni
        if checked.kind != "join":
            cfg.cluster.allow_scheduling_on_masters = checked.allow_scheduling_on_masters
    result = cfgmod.validate(cfg, platform_mode)
    if result.errors:
        # the problems name config keys and the caller's own values, never a secret
        lines = [p.render() for p in result.errors[:10]]
        raise GRPCError(
            GrpcStatus.INVALID_ARGUMENT, "the generated config is not valid: " + "; ".join(lines)
        )
    admin = pki.admin_client_cert(bundle.talos_ca, clock=checked.clock)
    # The talosconfig's endpoint is the control-plane endpoint's host, as in Talos v0.9.3.
    client = tcmod.for_cluster(
        checked.cluster_name,
        [endpoint_host(checked.endpoint)],
        bundle.talos_ca.crt,
        admin.crt,
        admin.key,
    )
    return cfgmod.encode(cfg, comments=False).encode(), client.to_yaml().encode()


def generate_configuration(
    req: Any, *, maintenance: bool, running_config: str | None, platform_mode: str = "container"
) -> Any:
    """The ``GenerateConfigurationResponse`` for ``req`` (runs in a worker thread: key
    generation takes a while)."""
    checked = check(req)
    if maintenance or running_config is None:
        if checked.kind == "join":
            # A new cluster's secrets would make a worker of no cluster.
            raise GRPCError(
                GrpcStatus.FAILED_PRECONDITION,
                "machine_config.type: a join (worker) config cannot be generated in maintenance "
                "mode: ask a configured control-plane node of the cluster",
            )
        bundle = pki.generate_secrets(clock=checked.clock)
    else:
        running = cfgmod.load(running_config, "running config").config
        if running.machine.type in ("worker", "join"):
            raise GRPCError(
                GrpcStatus.FAILED_PRECONDITION, "config can't be generated on worker nodes"
            )
        bundle = bundle_from_config(running)
    data, talosconfig = generate(checked, bundle, platform_mode)
    return machine_pb2.GenerateConfigurationResponse(
        messages=[machine_pb2.GenerateConfiguration(data=[data], talosconfig=talosconfig)]
    )
