"""Make the fixed secrets bundle the config golden tests generate from.

Run once (``python tests/unit/config/make_secrets.py``); the output is committed as
tests/data/config/secrets.yaml so that the golden configs never change. Uses ``cryptography``
directly with a fixed clock; the keys are test-only.
"""

from __future__ import annotations

import base64
import datetime
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from libtalos.secrets import CertKey, SecretsBundle

NOW = datetime.datetime(2021, 3, 22, 12, 0, 0, tzinfo=datetime.UTC)
OUT = Path(__file__).resolve().parents[2] / "data" / "config" / "secrets.yaml"


def _ca(name: str, key: ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey) -> CertKey:
    subject = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW)
        .not_valid_after(NOW + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    cert = builder.sign(key, algorithm)
    return CertKey(
        crt=cert.public_bytes(serialization.Encoding.PEM),
        key=key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ),
    )


def main() -> int:
    sa = ec.generate_private_key(ec.SECP256R1())
    bundle = SecretsBundle(
        talos_ca=_ca("talos", ed25519.Ed25519PrivateKey.generate()),
        kubernetes_ca=_ca("kubernetes", ec.generate_private_key(ec.SECP256R1())),
        etcd_ca=_ca("etcd", ec.generate_private_key(ec.SECP256R1())),
        aggregator_ca=_ca("", ec.generate_private_key(ec.SECP256R1())),
        service_account_key=sa.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        ),
        trustd_token="q2nb8w.l8rsqijsvwvmkvuz",
        bootstrap_token="9fmsl4.0s0v6h0bcbyqqdtz",
        aescbc_encryption_secret=base64.b64encode(bytes(range(32))).decode(),
    )
    OUT.write_text(bundle.to_yaml())
    sys.stderr.write(f"wrote {OUT}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
