"""The Typer app: one module per command under :mod:`talos_pki.commands`."""

from __future__ import annotations

from libtalos.cli import make_app
from talos_pki.commands import (
    ca,
    fingerprint,
    gen,
    inspect,
    issue,
    kubeconfig_cert,
    secrets,
    verify,
)

app = make_app(
    name="talos-pki",
    help="Talos PKI as a Unix tool: CAs, leaf certificates, secrets bundle, SPKI fingerprints, "
    "kubeconfig certificates. Data on stdout as YAML (crt/key as base64 of PEM). "
    "Exit codes: 0 ok, 1 failure (bad PEM, mismatch, verify failed, expiring), 2 usage.",
    no_args_is_help=True,
)
app.command("ca")(ca.ca)
app.command("issue")(issue.issue)
app.command("secrets")(secrets.secrets)
app.command("fingerprint")(fingerprint.fingerprint)
app.command("inspect")(inspect.inspect)
app.command("verify")(verify.verify)
app.command("kubeconfig-cert")(kubeconfig_cert.kubeconfig_cert)
app.add_typer(gen.app, name="gen")  # talosctl gen ca|key|csr|crt|keypair: PEM files
