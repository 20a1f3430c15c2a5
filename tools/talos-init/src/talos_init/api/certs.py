"""The node's API certificates and the maintenance-mode console banner.

What Talos issues and prints: docs/talos-facts.md#pki, #maintenance-mode.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from libtalos.secrets import CertKey

if TYPE_CHECKING:
    from libtalos import pki

# libtalos.pki (cryptography) is imported inside the functions: PID 1 imports this module for
# the banner and the constants, and issues certificates in a child (talos_init.api.issuer).

MAINTENANCE_TTL = dt.timedelta(hours=24)
NODE_CERT_TTL = dt.timedelta(hours=24)  # a control plane's own API certificate
# What trustd issues to a worker. Renewal (talos_init.api.renewal) starts at half-life and
# checks hourly, so a worker has about 12 attempts before its certificate expires.
WORKER_CERT_TTL = dt.timedelta(hours=24)


def _split_sans(names: Sequence[str]) -> tuple[list[str], list[str]]:
    ips: list[str] = []
    dns: list[str] = []
    for name in names:
        try:
            ips.append(str(ipaddress.ip_address(name)))
        except ValueError:
            dns.append(name)
    return ips, dns


def _unique(items: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(i for i in items if i))


@dataclass(frozen=True)
class MaintenanceCert:
    """The ephemeral self-signed Ed25519 CA and server certificate of one maintenance boot."""

    ca: CertKey
    server: CertKey
    fingerprint: str  # Talos's SPKI fingerprint of ``server`` (base64 SHA-256)

    @classmethod
    def create(
        cls, addresses: Sequence[str], hostname: str = "", clock: pki.Clock | None = None
    ) -> MaintenanceCert:
        """SANs: every given address plus 127.0.0.1 and ::1, and the hostname (as Talos)."""
        from libtalos import pki

        ca = pki.new_ca(algorithm="ed25519", organizations=[""], ttl=MAINTENANCE_TTL, clock=clock)
        ips, dns = _split_sans([*addresses, "127.0.0.1", "::1", hostname])
        server = pki.issue(
            ca,
            kind="server",
            ip_addresses=_unique(ips),
            dns_names=_unique(dns),
            ttl=MAINTENANCE_TTL,
            clock=clock,
        )
        return cls(ca, server, pki.spki_fingerprint(server.crt))


def node_server_cert(
    machine_ca: CertKey,
    addresses: Sequence[str],
    hostname: str,
    cert_sans: Sequence[str] = (),
    *,
    domainname: str = "",
    ttl: dt.timedelta = NODE_CERT_TTL,
    clock: pki.Clock | None = None,
) -> CertKey:
    """A control plane's API certificate, issued from ``machine.ca``: Ed25519,
    ServerAuth+ClientAuth (the node also dials other nodes when proxying), SANs = the node's
    addresses, the hostname (and ``hostname.domainname``), and ``machine.certSANs``. Workers
    get a narrower certificate from trustd (:func:`talos_init.api.trustd.sign_csr`)."""
    from libtalos import pki

    names = [*addresses, hostname, *cert_sans]
    if hostname and domainname:
        names.append(f"{hostname}.{domainname}")
    ips, dns = _split_sans(names)
    return pki.issue(
        machine_ca,
        kind="peer",
        ip_addresses=_unique(ips),
        dns_names=_unique(dns),
        ttl=ttl,
        key_algorithm="ed25519",
        clock=clock,
    )


def needs_renewal(crt_pem: bytes, now: dt.datetime | None = None) -> bool:
    """True once half of the certificate's lifetime has passed (Talos renews at half-life)."""
    from libtalos import pki

    cert = pki.load_certificate(crt_pem, "node certificate")
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    current = now or dt.datetime.now(dt.UTC)
    return past_half_life(start.timestamp(), end.timestamp(), current.timestamp())


def past_half_life(not_before: float, not_after: float, now: float) -> bool:
    """The renewal rule on Unix times (PID 1 keeps the validity the issuing child reported)."""
    return now >= not_before + (not_after - not_before) / 2


def maintenance_banner(
    addresses: Sequence[str], fingerprint: str, *, prog: str = "talosctl"
) -> list[str]:
    """The console lines of maintenance mode (each is printed with the ``[talos]`` prefix)."""
    first = addresses[0] if addresses else "<IP>"
    base = f"{prog} apply-config --insecure --nodes {first}"
    return [
        "starting maintenance service",
        "this machine is reachable at:",
        *(f"\t{a}" for a in addresses),
        "server certificate fingerprint:",
        f"\t{fingerprint}",
        "",
        "upload configuration using talosctl:",
        f"\t{base} --file <config.yaml>",
        "or apply configuration using talosctl interactive installer:",
        f"\t{base} --interactive",
        "optionally with node fingerprint check:",
        f"\t{base} --cert-fingerprint '{fingerprint}' --file <config.yaml>",
    ]
