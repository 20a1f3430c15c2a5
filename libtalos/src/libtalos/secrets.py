"""The secrets bundle: every CA, key and token a cluster's configs are generated from.

``talos-pki secrets`` produces it once; ``talos-gen config --with-secrets`` consumes it, so the
same bundle always yields the same CAs. The YAML shape is the one ``talosctl gen secrets`` writes
(``certs``, ``secrets``, ``trustdinfo``; certificates and keys as base64 of PEM), so bundles move
between this project and Talos's own tools. Loading is as strict as the config loader: unknown
keys, missing keys, wrong types, undecodable base64 and certificates or keys that the config
checks of :mod:`libtalos.certcheck` refuse (not PEM of the right type, unsupported key type, a
key not matching its CA's certificate, a CA certificate without the CA flag) are errors naming
the file, line and key.

Messages never quote a value from the bundle: every value in it is secret.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any

from libtalos.errors import Problem, ValidationError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from libtalos.yamlio import Document

TOKEN_RE = re.compile(r"^[a-z0-9]{6}\.[a-z0-9]{16}$")


@dataclass(frozen=True)
class CertKey:
    """A certificate and its private key, both PEM; ``key`` is ``b""`` when unknown."""

    crt: bytes
    key: bytes = field(default=b"", repr=False)  # secret: kept out of repr() and tracebacks

    def to_yaml(self) -> dict[str, str]:
        return {"crt": b64(self.crt), "key": b64(self.key)}


@dataclass(frozen=True)
class SecretsBundle:
    """All cluster secrets (docs/talos-facts.md#pki, #tokens).

    ``aggregator_ca`` and ``service_account_key`` are ``None`` under the v0.8 contract, which
    did not have them.
    """

    talos_ca: CertKey  # machine.ca, Ed25519
    kubernetes_ca: CertKey  # cluster.ca
    etcd_ca: CertKey  # cluster.etcd.ca
    aggregator_ca: CertKey | None  # cluster.aggregatorCA
    # The secrets below are kept out of repr() (and so out of logs and assertion messages).
    service_account_key: bytes | None = field(repr=False)  # cluster.serviceAccount.key (PEM)
    trustd_token: str = field(repr=False)  # machine.token
    bootstrap_token: str = field(repr=False)  # cluster.token
    aescbc_encryption_secret: str = field(repr=False)  # cluster.aescbcEncryptionSecret (base64)

    def to_yaml_data(self) -> dict[str, Any]:
        certs: dict[str, Any] = {
            "etcd": self.etcd_ca.to_yaml(),
            "k8s": self.kubernetes_ca.to_yaml(),
        }
        if self.aggregator_ca is not None:
            certs["k8saggregator"] = self.aggregator_ca.to_yaml()
        if self.service_account_key is not None:
            certs["k8sserviceaccount"] = {"key": b64(self.service_account_key)}
        certs["os"] = self.talos_ca.to_yaml()
        return {
            "certs": certs,
            "secrets": {
                "bootstraptoken": self.bootstrap_token,
                "aescbcencryptionsecret": self.aescbc_encryption_secret,
            },
            "trustdinfo": {"token": self.trustd_token},
        }

    def to_yaml(self) -> str:
        from libtalos import yamlio  # imported on use: `talos-pki secrets` starts without PyYAML

        return yamlio.dump(self.to_yaml_data())


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


_SHAPE: dict[str, Any] = {
    "cluster": {"id": str, "secret": str},  # written by newer Talos; accepted, not used
    "certs": {
        "etcd": {"crt": bytes, "key": bytes},
        "k8s": {"crt": bytes, "key": bytes},
        "k8saggregator": {"crt": bytes, "key": bytes},
        "k8sserviceaccount": {"key": bytes},
        "os": {"crt": bytes, "key": bytes},
    },
    "secrets": {
        "bootstraptoken": str,
        "aescbcencryptionsecret": str,
        "secretboxencryptionsecret": str,  # newer Talos; accepted, not used
    },
    "trustdinfo": {"token": str},
}
_REQUIRED = [
    ("certs",),
    ("certs", "etcd"),
    ("certs", "k8s"),
    ("certs", "os"),
    ("certs", "etcd", "crt"),
    ("certs", "etcd", "key"),
    ("certs", "k8s", "crt"),
    ("certs", "k8s", "key"),
    ("certs", "os", "crt"),
    ("certs", "os", "key"),
    ("secrets",),
    ("secrets", "bootstraptoken"),
    ("secrets", "aescbcencryptionsecret"),
    ("trustdinfo",),
    ("trustdinfo", "token"),
]


def _material_problems(doc: Document, values: dict[tuple[str, ...], Any]) -> list[Problem]:
    """The checks a config's CAs and keys get (:mod:`libtalos.certcheck`), on the bundle."""
    from libtalos import certcheck

    problems = []
    for name in ("etcd", "k8s", "k8saggregator", "os"):
        crt, key = values.get(("certs", name, "crt")), values.get(("certs", name, "key"))
        found = certcheck.pair_problems(crt, key, ca=True, crt_name=f"certs.{name}.crt")
        problems += [doc.problem(("certs", name, half), message) for half, message in found]
    sa_key = values.get(("certs", "k8sserviceaccount", "key"))
    if sa_key is not None:
        problem = certcheck.key_problem(sa_key, allowed=certcheck.SERVICE_ACCOUNT_KEYS)
        if problem is not None:
            problems.append(doc.problem(("certs", "k8sserviceaccount", "key"), problem))
    return problems


def load_bundle(text: str, source: str = "<stdin>") -> SecretsBundle:
    """Strictly load a secrets bundle; raises :class:`ValidationError` listing every problem."""
    from libtalos import yamlio

    doc = yamlio.load_one(text, source)
    problems: list[Problem] = []
    values: dict[tuple[str, ...], Any] = {}

    def walk(data: Any, shape: Any, path: tuple[str, ...]) -> None:
        if isinstance(shape, dict):
            if not isinstance(data, dict):
                problems.append(doc.problem(path, "must be a mapping"))
                return
            for key, value in data.items():
                if key not in shape:
                    problems.append(doc.problem((*path, key), "unknown key"))
                    continue
                walk(value, shape[key], (*path, key))
            return
        if not isinstance(data, str):
            problems.append(doc.problem(path, "must be a string"))
            return
        if shape is bytes:
            try:
                values[path] = base64.b64decode(data, validate=True)
            except (binascii.Error, ValueError):
                problems.append(doc.problem(path, "is not valid base64"))
        else:
            values[path] = data

    walk(doc.data, _SHAPE, ())
    problems += _material_problems(doc, values)
    for req in _REQUIRED:
        parent = doc.data
        for part in req:
            parent = parent.get(part) if isinstance(parent, dict) else None
        if parent is None:
            problems.append(doc.problem(req, "is required"))
    for path in (("secrets", "bootstraptoken"), ("trustdinfo", "token")):
        token = values.get(path)
        if token is not None and not TOKEN_RE.match(token):
            problems.append(doc.problem(path, "must match [a-z0-9]{6}.[a-z0-9]{16}"))
    secret = values.get(("secrets", "aescbcencryptionsecret"))
    if secret is not None:
        try:
            ok = len(base64.b64decode(secret, validate=True)) == 32
        except (binascii.Error, ValueError):
            ok = False
        if not ok:
            problems.append(
                doc.problem(("secrets", "aescbcencryptionsecret"), "must be base64 of 32 bytes")
            )
    if problems:
        raise ValidationError(problems)

    def pair(name: str) -> CertKey | None:
        crt = values.get(("certs", name, "crt"))
        if crt is None:
            return None
        return CertKey(crt, values.get(("certs", name, "key"), b""))

    talos_ca, k8s_ca, etcd_ca = pair("os"), pair("k8s"), pair("etcd")
    assert talos_ca is not None and k8s_ca is not None and etcd_ca is not None  # noqa: S101 - checked above
    return SecretsBundle(
        talos_ca=talos_ca,
        kubernetes_ca=k8s_ca,
        etcd_ca=etcd_ca,
        aggregator_ca=pair("k8saggregator"),
        service_account_key=values.get(("certs", "k8sserviceaccount", "key")),
        trustd_token=values[("trustdinfo", "token")],
        bootstrap_token=values[("secrets", "bootstraptoken")],
        aescbc_encryption_secret=values[("secrets", "aescbcencryptionsecret")],
    )
