"""``talos-pki gen ca|key|csr|crt|keypair``: talosctl v0.9's PEM-file commands.

Flags, defaults and file names are talosctl's (docs/talos-facts.md#talosctl-gen-pki): each
command writes its files into the current directory (or the directory a name or path points
into), named after ``--organization``, ``--name`` or the key file, and prints nothing. As with
talosctl, existing files are replaced and every file is written 0600; here each is written
atomically (a temp file renamed into place) and ``gen ca``'s three files as one step.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from typing import Annotated

import typer

from libtalos.cli import make_app
from libtalos.errors import UsageError

app = make_app(
    name="gen",
    help="Generate CAs, certificates and private keys as PEM files (talosctl gen's). "
    "Exit codes: 0 ok, 1 failure (an input file missing, unreadable or not the PEM expected; "
    "a file cannot be written), 2 usage (a flag missing or invalid: --hours, --ip, "
    "--organization).",
    no_args_is_help=True,
)

Organization = Annotated[
    str, typer.Option("--organization", help="X.509 distinguished name for the Organization.")
]
Name = Annotated[str, typer.Option("--name", help="The basename of the generated file.")]


_HOURS_HELP = "The hours from now on which the certificate validity period ends."


def _validity(hours: int, now: dt.datetime) -> dt.timedelta:
    from talos_pki.common import parse_duration

    if hours <= 0:
        raise UsageError(f"--hours: must be a positive number of hours, not {hours}")
    return parse_duration(f"{hours}h", "--hours", now=now)


def _check_organization(organization: str) -> None:
    from talos_pki.common import check_subject

    if not organization:
        raise UsageError("--organization: must not be empty (it names the files written)")
    check_subject("--organization", [organization])


def _check_name(option: str, name: str) -> None:
    if not name or name.endswith("/"):
        raise UsageError(f"{option}: must name a file, not {name!r}")


def _check_ip(value: str) -> list[str]:
    try:
        return [str(ipaddress.ip_address(value))]
    except ValueError:
        raise UsageError(f"--ip: {value!r} is not an IP address") from None


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def _write(files: list[tuple[str, bytes]]) -> None:
    from libtalos.fsutil import SECRET_MODE, atomic_write_many

    atomic_write_many([(path, data, SECRET_MODE) for path, data in files], force=True)


@app.command("ca")
def ca(
    organization: Organization,
    hours: Annotated[int, typer.Option("--hours", help=_HOURS_HELP)] = 87600,
    use_rsa: Annotated[bool, typer.Option("--rsa", help="Generate in RSA format.")] = False,
) -> None:
    """Generate a self-signed X.509 CA: ORG.crt, ORG.key and ORG.sha256."""
    from talos_pki import pemfiles

    _check_organization(organization)
    now = _now()
    pair = pemfiles.self_signed_ca(
        organization, not_before=now, ttl=_validity(hours, now), use_rsa=use_rsa
    )
    _write(
        [
            (organization + ".crt", pair.crt),
            (organization + ".sha256", pemfiles.spki_sha256(pair.crt).encode()),
            (organization + ".key", pair.key),
        ]
    )


@app.command("key")
def key(name: Name) -> None:
    """Generate an Ed25519 private key: NAME.key."""
    from talos_pki import pemfiles

    _check_name("--name", name)
    _write([(name + ".key", pemfiles.new_key())])


@app.command("csr")
def csr(
    key_path: Annotated[
        str, typer.Option("--key", help="Path to the PEM encoded private key (Ed25519, EC, RSA).")
    ],
    ip: Annotated[str, typer.Option("--ip", help="Generate the certificate for this IP address.")],
) -> None:
    """Generate a CSR signed by a private key: the key's path with .csr for its extension."""
    from libtalos.inputs import read_input_bytes
    from talos_pki import pemfiles

    ips = _check_ip(ip)
    data, source = read_input_bytes(key_path)
    request = pemfiles.new_csr(data, ips, what=f"--key {source}")
    _write([(os.path.splitext(key_path)[0] + ".csr", request)])


@app.command("crt")
def crt(
    ca_base: Annotated[
        str,
        typer.Option(
            "--ca", help="The CA's basename: BASE.crt and BASE.key are read (BASE.crt also works)."
        ),
    ],
    csr_path: Annotated[
        str, typer.Option("--csr", help="Path to the PEM encoded CERTIFICATE REQUEST.")
    ],
    name: Name,
    hours: Annotated[int, typer.Option("--hours", help=_HOURS_HELP)] = 24,
) -> None:
    """Generate an X.509 certificate from a CSR, signed by a CA: NAME.crt."""
    from libtalos import pki
    from libtalos.inputs import read_input_bytes
    from talos_pki import pemfiles

    _check_name("--name", name)
    now = _now()
    ttl = _validity(hours, now)
    base = ca_base.removesuffix(".crt")
    crt_pem, crt_source = read_input_bytes(base + ".crt")
    key_pem, _ = read_input_bytes(base + ".key")
    loaded = pki.LoadedCA.load(pki.CertKey(crt_pem, key_pem), what=f"--ca {crt_source}")
    data, source = read_input_bytes(csr_path)
    request = pemfiles.load_csr(data, f"--csr {source}")
    _write([(name + ".crt", pemfiles.sign_csr(loaded, request, not_before=now, ttl=ttl))])


@app.command("keypair")
def keypair(
    organization: Organization,
    ip: Annotated[
        str, typer.Option("--ip", help="Generate the certificate for this IP address.")
    ] = "",
) -> None:
    """Generate a self-signed X.509 key pair valid for 24 hours: ORG.crt and ORG.key."""
    from talos_pki import pemfiles

    _check_organization(organization)
    ips = _check_ip(ip) if ip else []
    now = _now()
    pair = pemfiles.self_signed_ca(
        organization, not_before=now, ttl=dt.timedelta(hours=24), ip_addresses=ips
    )
    _write([(organization + ".crt", pair.crt), (organization + ".key", pair.key)])
