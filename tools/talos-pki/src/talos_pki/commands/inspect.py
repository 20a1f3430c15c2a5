"""``talos-pki inspect``: subject, SANs, key, validity of certificates, as YAML."""

from __future__ import annotations

import sys
from typing import Annotated, Any

import typer

from libtalos import yamlio
from libtalos.errors import PKIError
from libtalos.fsutil import read_input
from talos_pki.common import (
    find_certificates,
    parse_duration,
    start_clock,
    unreadable_certificates,
)


def inspect(
    file: Annotated[
        str,
        typer.Argument(
            help="PEM, base64 of PEM, or YAML holding certificates (talosconfig, bundle, "
            "{crt, key}); '-' for stdin."
        ),
    ],
    check: Annotated[
        bool,
        typer.Option(
            help="Exit 1 when a certificate expires within --within, does not match its key, "
            "or cannot be read."
        ),
    ] = False,
    within: Annotated[str, typer.Option(help="Window for --check, e.g. 30d, 720h.")] = "30d",
) -> None:
    """Describe certificates as YAML (a YAML input: one entry per certificate's key path)."""
    from libtalos import pki

    clock = start_clock()
    window = parse_duration(within, "--within", now=clock.now())
    text, source = read_input(file)
    unreadable = unreadable_certificates(text, source)
    for line in unreadable:
        sys.stderr.write(f"warning: {line}\n")
    found = find_certificates(text, source)
    entries: list[tuple[str, pki.CertInfo, dict[str, Any]]] = []
    mismatched: list[str] = []
    for item in found:
        name = f"{source} {item.label}".strip()
        info = pki.inspect(item.crt, clock, what=name)
        data = info.to_yaml_data()
        if item.key is not None:
            try:
                pki.check_key_matches(item.crt, item.key, name)
                data["keyMatches"] = True
            except PKIError:
                data["keyMatches"] = False
                mismatched.append(name)
        entries.append((name, info, data))
    if len(found) == 1 and not found[0].label:
        sys.stdout.write(yamlio.dump(entries[0][2]))
    else:
        labels = [item.label for item in found]
        sys.stdout.write(
            yamlio.dump({lb: d for lb, (_, _, d) in zip(labels, entries, strict=True)})
        )
    if check:
        problems = list(unreadable)
        problems += [f"{name}: the certificate and its key do not match" for name in mismatched]
        problems += [
            f"{name}: expires within {within} (notAfter {data['notAfter']})"
            for name, info, data in entries
            if info.expires_within(window, clock)
        ]
        if problems:
            raise PKIError("; ".join(problems))
