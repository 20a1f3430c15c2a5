"""Validation of a v1alpha1 config for a mode: every rule of ``talosctl validate`` and a few more.

:func:`validate` returns every error and every warning at once, each a
:class:`~libtalos.errors.Problem` with the key path (and the line, when the config was loaded
from text). The library stays pure: metal mode's "install disk must exist" check calls the
injected ``path_exists``.

Rules beyond Talos v0.9 (each says so where it is checked): STATE encryption is checked like
EPHEMERAL; the CNI rule covers control-plane nodes as well as init; routes, nameservers, host
entries, subnets, tokens, registry mirror URLs, certificate SANs, the hostname (the node's
rule, :mod:`libtalos.names`), interface names and MTUs, the paths and modes of
``machine.files``, ``machine.sysctls`` names (what the node applies) and allowed values are
checked; every certificate and key is read
and checked (:mod:`libtalos.certcheck`: PEM type, DER, supported key type, key matching its
certificate, CA flag on CAs); warnings exist (v0.9 had none; v0.10 added them).
"""

from __future__ import annotations

import base64
import binascii
import enum
import ipaddress
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from libtalos import certcheck
from libtalos.config import schema
from libtalos.config.v1alpha1 import (
    DEFAULT_CNI,
    ENCRYPTION_PROVIDERS,
    CertAndKey,
    Config,
    EncryptionConfig,
    Route,
)
from libtalos.errors import PKIError, Problem, UsageError, ValidationError
from libtalos.names import hostname_problem
from libtalos.yamlio import Path, format_path

ENDPOINT_HINT = "try: https://host:6443"
TOKEN_RE = re.compile(r"^[a-z0-9]{6}\.[a-z0-9]{16}$")
# govalidator's rxDNSName (what Talos's IsDNSName uses)
_DNS_NAME_RE = re.compile(
    r"^([a-zA-Z0-9_][a-zA-Z0-9_-]{0,62})(\.[a-zA-Z0-9_][a-zA-Z0-9_-]{0,62})*[._]?$"
)
LUKS2_KEYSLOTS = 32
# Private keys read per config: each costs a scalar multiplication in pure Python (1-6 ms), so a
# hostile config must not hold thousands. A generated one has five at most.
MAX_PRIVATE_KEYS = 32
SECTOR_SIZES = (512, 1024, 2048, 4096)
MAX_FILE_MODE = 0o7777
SYSCTL_RE = re.compile(r"^[a-z0-9_.]+$")
# A Linux interface name: at most 15 bytes (IFNAMSIZ - 1); these characters only.
IFNAME_RE = re.compile(r"[A-Za-z0-9_.@-]{1,15}")
MIN_MTU, MAX_MTU = 68, 65535  # IPv4's minimum; the largest an IPv4/IPv6 packet can be


class Mode(enum.StrEnum):
    """Where the config will run (``talosctl validate --mode``)."""

    CLOUD = "cloud"
    CONTAINER = "container"
    METAL = "metal"

    @property
    def requires_install(self) -> bool:
        return self is Mode.METAL


@dataclass
class ValidationResult:
    errors: list[Problem] = field(default_factory=list)
    warnings: list[Problem] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors

    def raise_for_errors(self) -> None:
        """Raise :class:`ValidationError` listing every error, if there is any."""
        if self.errors:
            raise ValidationError(self.errors)


def endpoint_problem(url: str) -> str | None:
    """What is wrong with a control-plane endpoint URL, without a hint; ``None`` when fine."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "is not a valid URL"
    if parts.scheme != "https":
        return "must be a URL with the https scheme"
    hostport = parts.netloc.rpartition("@")[2]
    if not hostport.startswith("[") and hostport.count(":") > 1:
        return "an IPv6 address must be in brackets"
    try:
        port = parts.port
    except ValueError:
        return "has an invalid port"
    if not parts.hostname:
        return "has no host"
    if port == 0 or hostport.endswith(":"):
        return "has an invalid port"
    from libtalos.endpoint import EndpointError, parse_url  # host, characters, length

    try:
        parse_url(url)
    except EndpointError as exc:
        return exc.reason
    return None


def check_endpoint(url: str) -> str | None:
    """The error text for a bad endpoint URL (with a ``try: https://host:6443`` hint), or None.

    The rules of ``talosctl gen config`` (docs/talos-facts.md#gen-config-command): https scheme, a
    non-empty host, an IPv6 host in brackets, a valid port.
    """
    what = endpoint_problem(url)
    return None if what is None else f"{what}; {ENDPOINT_HINT}"


def is_dns_name(name: str) -> bool:
    """govalidator's IsDNSName: labels of letters, digits, ``_`` and ``-``; not an IP."""
    if not name or len(name.replace(".", "")) > 255:
        return False
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return bool(_DNS_NAME_RE.match(name))
    return False


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text)
    except ValueError:
        return False
    return True


def _is_cidr(text: str) -> bool:
    if "/" not in text:
        return False
    try:
        ipaddress.ip_interface(text)  # like Go's ParseCIDR, host bits may be set
    except ValueError:
        return False
    return True


def mirror_endpoint_problem(url: str) -> str | None:
    """What is wrong with a registry mirror endpoint (an http or https URL); None if fine."""
    try:
        parts = urlsplit(url)
        ok = parts.scheme in ("http", "https") and bool(parts.hostname)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        ok = False
    return None if ok else "must be an http or https URL"


def san_problem(name: str) -> str | None:
    """What is wrong with a subject alternative name (an IP, or a DNS name, maybe ``*.``)."""
    if not name:
        return "must not be empty"
    if _is_ip(name) or is_dns_name(name.removeprefix("*.")):
        return None
    return "must be an IP address or a DNS name"


def _b64(text: str) -> bytes | None:
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


class _Checker:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.document = cfg.source_document
        self.result = ValidationResult()
        self.keys_left = MAX_PRIVATE_KEYS

    def take_key(self, path: Path) -> bool:
        """Whether the private key at ``path`` may be read (an error once too many were)."""
        self.keys_left -= 1
        if self.keys_left < 0:
            self.error(path, f"not checked: a config may hold at most {MAX_PRIVATE_KEYS} keys")
        return self.keys_left >= 0

    def _problem(self, path: Path, message: str) -> Problem:
        if self.document is not None:
            return self.document.problem(path, message)
        return Problem(message=message, path=format_path(path))

    def error(self, path: Path, message: str) -> None:
        self.result.errors.append(self._problem(path, message))

    def warn(self, path: Path, message: str) -> None:
        self.result.warnings.append(self._problem(path, message))


def validate(
    cfg: Config,
    mode: Mode | str,
    *,
    path_exists: Callable[[str], bool] = os.path.exists,
) -> ValidationResult:
    """Check ``cfg`` for ``mode`` (metal, cloud or container); every problem at once."""
    try:
        mode = Mode(mode)
    except ValueError:
        raise UsageError(
            f"unknown mode {str(mode)!r} (choose from {', '.join(m.value for m in Mode)})"
        ) from None
    c = _Checker(cfg)
    _allowed_values(c)
    _machine(c, mode, path_exists)
    _cluster(c)
    _network(c)
    _disks(c)
    _encryption(c)
    _warnings(c)
    # In document order when the config came from text (stable: code order otherwise).
    c.result.errors.sort(key=lambda p: p.line or 0)
    c.result.warnings.sort(key=lambda p: p.line or 0)
    return c.result


def _allowed_values(c: _Checker) -> None:
    """Every field documented with allowed values holds one of them (empty means unset)."""
    for path, mf, value in schema.walk(c.cfg):
        if mf.doc.values and isinstance(value, str) and value and value not in mf.doc.values:
            c.error(path, f"must be one of: {', '.join(mf.doc.values)}")


def _machine(c: _Checker, mode: Mode, path_exists: Callable[[str], bool]) -> None:
    m = c.cfg.machine
    if not m.type:
        c.error(("machine", "type"), "is required")
    if mode.requires_install:
        if m.install is None:
            c.error(("machine", "install"), "is required in metal mode")
        elif not m.install.disk:
            c.error(("machine", "install", "disk"), "is required in metal mode")
        elif not path_exists(m.install.disk):
            c.error(("machine", "install", "disk"), f"install disk {m.install.disk} does not exist")
    # A worker carries at most the Talos CA's certificate (Talos's join.yaml has no machine.ca);
    # a control plane signs its API certificate and trustd's with the key.
    if m.ca is not None:
        _cert_and_key(c, ("machine", "ca"), m.ca, key_required=not m.is_worker())
    for i, san in enumerate(m.cert_sans):
        problem = san_problem(san)
        if problem is not None:
            c.error(("machine", "certSANs", i), problem)
    if m.network is not None and m.network.hostname:
        problem = hostname_problem(m.network.hostname)
        if problem is not None:
            c.error(("machine", "network", "hostname"), problem)
    for i, f in enumerate(m.files):  # beyond v0.9: what the node writes
        if not f.path.startswith("/"):
            c.error(("machine", "files", i, "path"), "must be an absolute path")
        if not 0 <= f.permissions <= MAX_FILE_MODE:
            c.error(("machine", "files", i, "permissions"), "must be a file mode")
    for key in m.sysctls:  # beyond v0.9: the node writes /proc/sys/<key with / for .>
        if not SYSCTL_RE.match(key):
            c.error(("machine", "sysctls", key), "not a sysctl name")
    if m.registries is not None:  # beyond v0.9
        for host, mirror in m.registries.mirrors.items():
            if not mirror.endpoints:
                c.error(
                    ("machine", "registries", "mirrors", host, "endpoints"), "must not be empty"
                )
            for j, url in enumerate(mirror.endpoints):
                problem = mirror_endpoint_problem(url)
                if problem is not None:
                    c.error(("machine", "registries", "mirrors", host, "endpoints", j), problem)
        for host, registry in m.registries.config.items():
            tls = registry.tls
            here: Path = ("machine", "registries", "config", host, "tls")
            if tls is not None and tls.client_identity is not None:
                _cert_and_key(
                    c,
                    (*here, "clientIdentity"),
                    tls.client_identity,
                    key_required=True,
                    ca=False,
                    missing_key="is required with the certificate",
                )
            if tls is not None and tls.ca:
                raw = _b64(tls.ca)
                if raw is None:
                    c.error((*here, "ca"), "must be base64 of a PEM certificate")
                else:
                    try:
                        certcheck.read_certificate(raw)
                    except PKIError as exc:
                        c.error((*here, "ca"), exc.message)


def _cert_and_key(
    c: _Checker,
    path: Path,
    pair: CertAndKey,
    *,
    key_required: bool,
    ca: bool = True,
    missing_key: str = "is required on control-plane nodes",
) -> None:
    """A certificate (a CA when ``ca``) and its key: readable, supported, matching."""
    crt = key = None
    if not pair.crt:
        c.error((*path, "crt"), "is required")
    elif (crt := _b64(pair.crt)) is None:
        c.error((*path, "crt"), "must be base64 of a PEM certificate")
    if pair.key:
        if (key := _b64(pair.key)) is None:
            c.error((*path, "key"), "must be base64 of a PEM key")
    elif key_required:
        c.error((*path, "key"), missing_key)
    if key is not None and not c.take_key((*path, "key")):
        key = None
    crt_name = format_path((*path, "crt"))
    for half, message in certcheck.pair_problems(crt, key, ca=ca, crt_name=crt_name):
        c.error((*path, half), message)


def _cluster(c: _Checker) -> None:
    cl = c.cfg.cluster
    m = c.cfg.machine
    endpoint = cl.endpoint()
    if not endpoint:
        c.error(("cluster", "controlPlane", "endpoint"), "is required")
    else:
        problem = check_endpoint(endpoint)
        if problem is not None:
            c.error(("cluster", "controlPlane", "endpoint"), problem)
    port = cl.control_plane.local_api_server_port if cl.control_plane is not None else 0
    if not 0 <= port <= 65535:
        c.error(("cluster", "controlPlane", "localAPIServerPort"), "must be a port (1-65535)")
    # v0.9 checks the CNI for init only; a controlplane node applies the same manifests when it
    # is bootstrapped, so the rule covers it too.
    if m.is_control_plane():
        cni = cl.network.cni if cl.network is not None else None
        name = (cni.name if cni is not None else "") or DEFAULT_CNI
        if name == "custom" and (cni is None or not cni.urls):
            c.error(("cluster", "network", "cni", "urls"), "a custom CNI needs at least one URL")
    net = cl.network
    if net is not None:
        if net.dns_domain and not is_dns_name(net.dns_domain):
            c.error(("cluster", "network", "dnsDomain"), "must be a valid DNS name")
        for key, subnets in (
            ("podSubnets", net.pod_subnets),
            ("serviceSubnets", net.service_subnets),
        ):
            for i, subnet in enumerate(subnets):
                if not _is_cidr(subnet):
                    c.error(("cluster", "network", key, i), "must be a CIDR (e.g. 10.244.0.0/16)")
    if cl.token and not TOKEN_RE.match(cl.token):
        c.error(("cluster", "token"), "must match [a-z0-9]{6}.[a-z0-9]{16}")
    if cl.aescbc_encryption_secret:
        try:
            ok = len(base64.b64decode(cl.aescbc_encryption_secret, validate=True)) == 32
        except (binascii.Error, ValueError):
            ok = False
        if not ok:
            c.error(("cluster", "aescbcEncryptionSecret"), "must be base64 of 32 bytes")
    for path, pair in (
        (("cluster", "ca"), cl.ca),
        (("cluster", "aggregatorCA"), cl.aggregator_ca),
        (("cluster", "etcd", "ca"), cl.etcd.ca if cl.etcd is not None else None),
    ):
        if pair is not None:
            _cert_and_key(c, path, pair, key_required=m.is_control_plane())
    if cl.service_account is not None and cl.service_account.key:
        raw = _b64(cl.service_account.key)
        here: Path = ("cluster", "serviceAccount", "key")
        if raw is None:
            c.error(here, "must be base64 of a PEM key")
        elif c.take_key(here):
            problem = certcheck.key_problem(raw, allowed=certcheck.SERVICE_ACCOUNT_KEYS)
            if problem is not None:
                c.error(here, problem)
    if cl.api_server is not None:
        for i, san in enumerate(cl.api_server.cert_sans):
            problem = san_problem(san)
            if problem is not None:
                c.error(("cluster", "apiServer", "certSANs", i), problem)


def _network(c: _Checker) -> None:
    m = c.cfg.machine
    net = m.network
    if net is None:
        return
    base: Path = ("machine", "network")
    for i, dev in enumerate(net.interfaces):
        here = (*base, "interfaces", i)
        if dev.vip is not None and m.is_worker():
            c.error((*here, "vip"), "virtual (shared) IP is not allowed on non-controlplane nodes")
        if dev.ignore:
            continue
        if not dev.interface:
            c.error((*here, "interface"), "is required")
        elif not IFNAME_RE.fullmatch(dev.interface):  # beyond v0.9
            c.error((*here, "interface"), "must be an interface name")
        if dev.dhcp and dev.cidr:
            c.error((*here, "cidr"), "cannot be set together with dhcp: true")
        if dev.cidr and not _is_cidr(dev.cidr):
            c.error((*here, "cidr"), "must be an address in CIDR notation (e.g. 192.168.2.5/24)")
        if dev.vip is not None and not _is_ip(dev.vip.ip):
            c.error((*here, "vip", "ip"), "must be an IPv4 or IPv6 address")
        if dev.mtu and not MIN_MTU <= dev.mtu <= MAX_MTU:  # 0: unset
            c.error((*here, "mtu"), f"must be between {MIN_MTU} and {MAX_MTU}")
        _routes(c, (*here, "routes"), dev.routes)
        for j, vlan in enumerate(dev.vlans):
            v = (*here, "vlans", j)
            if vlan.dhcp and vlan.cidr:
                c.error((*v, "cidr"), "cannot be set together with dhcp: true")
            if vlan.cidr and not _is_cidr(vlan.cidr):
                c.error((*v, "cidr"), "must be an address in CIDR notation (e.g. 192.168.2.5/24)")
            if not 1 <= vlan.vlan_id <= 4094:
                c.error((*v, "vlanId"), "must be between 1 and 4094")
            _routes(c, (*v, "routes"), vlan.routes)
    for i, ns in enumerate(net.nameservers):
        if not _is_ip(ns):
            c.error((*base, "nameservers", i), "must be an IPv4 or IPv6 address")
    for i, host in enumerate(net.extra_host_entries):
        if not _is_ip(host.ip):
            c.error((*base, "extraHostEntries", i, "ip"), "must be an IPv4 or IPv6 address")


def _routes(c: _Checker, path: Path, routes: list[Route]) -> None:
    for k, route in enumerate(routes):
        if not _is_cidr(route.network):
            c.error((*path, k, "network"), "must be a CIDR (e.g. 0.0.0.0/0)")
        if route.gateway and not _is_ip(route.gateway):
            c.error((*path, k, "gateway"), "must be an IPv4 or IPv6 address")


def _disks(c: _Checker) -> None:
    for i, disk in enumerate(c.cfg.machine.disks):
        parts = disk.partitions
        for j, part in enumerate(parts):
            here = ("machine", "disks", i, "partitions", j)
            if part.size == 0 and j != len(parts) - 1:
                c.error(
                    (*here, "size"), "a partition of size 0 (fill the disk) must be the last one"
                )
            if part.size < 0:
                c.error((*here, "size"), "must not be negative")
            if not part.mountpoint:
                c.error((*here, "mountpoint"), "is required")


def _encryption(c: _Checker) -> None:
    sde = c.cfg.machine.system_disk_encryption
    if sde is None:
        return
    # Talos v0.9 checked only EPHEMERAL (its validation never looked at `state`); a broken
    # STATE setting fails just as badly at boot, so both are checked here.
    for name, enc in (("state", sde.state), ("ephemeral", sde.ephemeral)):
        if enc is not None:
            _encryption_config(c, ("machine", "systemDiskEncryption", name), enc)


def _encryption_config(c: _Checker, path: Path, enc: EncryptionConfig) -> None:
    if not enc.provider:
        c.error((*path, "provider"), f"is required ({', '.join(ENCRYPTION_PROVIDERS)})")
    if not enc.keys:
        c.error((*path, "keys"), "at least one key is required")
    seen: dict[int, int] = {}
    for i, key in enumerate(enc.keys):
        here = (*path, "keys", i)
        kinds = [k for k in (key.static, key.node_id) if k is not None]
        if not kinds:
            c.error(here, "a key needs nodeID or static")
        elif len(kinds) > 1:
            c.error(here, "a key must have exactly one of nodeID and static")
        if key.static is not None and not key.static.passphrase:
            c.error((*here, "static", "passphrase"), "must not be empty")
        if not 0 <= key.slot < LUKS2_KEYSLOTS:
            c.error((*here, "slot"), f"must be between 0 and {LUKS2_KEYSLOTS - 1}")
        if key.slot in seen:
            c.error((*here, "slot"), f"duplicate slot (also used by keys[{seen[key.slot]}])")
        else:
            seen[key.slot] = i
    if enc.key_size and (enc.key_size < 0 or enc.key_size % 8):
        c.error((*path, "keySize"), "must be a positive multiple of 8 (bits)")
    if enc.block_size and enc.block_size not in SECTOR_SIZES:
        c.error((*path, "blockSize"), f"must be one of {', '.join(map(str, SECTOR_SIZES))}")


def _warnings(c: _Checker) -> None:
    cfg = c.cfg
    if cfg.debug:
        c.warn(("debug",), "debug logging is enabled")
    if not cfg.persist:
        c.warn(("persist",), "persist is false: the config is fetched again on every boot")
    m = cfg.machine
    if m.is_worker():
        if m.ca is not None and m.ca.key:
            c.warn(("machine", "ca", "key"), "a worker config should not carry the Talos CA key")
        if cfg.cluster.ca is not None and cfg.cluster.ca.key:
            c.warn(
                ("cluster", "ca", "key"), "a worker config should not carry the Kubernetes CA key"
            )
