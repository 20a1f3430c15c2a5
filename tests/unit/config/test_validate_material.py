"""Validation of a config's certificates, keys, hostname and SANs: table-driven, exact messages.

The same checks run in ``talos-gen validate``, in the node's ApplyConfiguration and at boot
(all three call :func:`libtalos.config.validate`); the boot path is exercised here through the
node's own config phase: a config that fails them leaves the node in maintenance mode.
"""

from __future__ import annotations

import asyncio
import warnings
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import dsa

from libtalos import pki
from libtalos.config import GenerateInput, encode, generate, load, validate
from libtalos.errors import ValidationError
from libtalos.secrets import b64
from talos_init import configsource

TALOS = pki.new_ca(algorithm="ed25519", organizations=["talos"])
OTHER = pki.new_ca(algorithm="ed25519", organizations=["talos"])
K8S = pki.new_ca(algorithm="ecdsa", organizations=["kubernetes"])
RSA_CA = pki.new_ca(algorithm="rsa", rsa_bits=2048)
LEAF = pki.issue(TALOS, kind="peer")  # ServerAuth+ClientAuth, CA flag not set


def _dsa_key() -> bytes:
    with warnings.catch_warnings():  # deprecated in cryptography: a key type nodes cannot use
        warnings.simplefilter("ignore")
        key = dsa.generate_private_key(2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


GARBAGE_CRT = b"-----BEGIN CERTIFICATE-----\nZ2FyYmFnZSBpbnNpZGUgYSBQRU0gYmxvY2s=\n-----END CERTIFICATE-----\n"
DSA_KEY = _dsa_key()

HEAD = "version: v1alpha1\nmachine:\n    type: {type}\n"  # lines 1-3
TAIL = "cluster:\n    controlPlane:\n        endpoint: https://10.5.0.2:6443\n"


def ca(crt: bytes | None, key: bytes | None, indent: int = 4, name: str = "ca") -> str:
    pad = " " * indent
    out = f"{pad}{name}:\n"
    if crt is not None:
        out += f"{pad}    crt: {b64(crt) if crt else '``'}\n"
    if key is not None:
        out += f"{pad}    key: {b64(key) if key else '``'}\n"
    return out.replace("``", "''")


def doc(machine: str = "", cluster: str = "", *, type_: str = "controlplane") -> str:
    return HEAD.format(type=type_) + machine + TAIL + cluster


def errors(text: str) -> list[str]:
    return [p.render() for p in validate(load(text, "c.yaml").config, "container").errors]


# machine.ca at lines 4-6 (crt on 5, key on 6).
MACHINE_CA = [
    pytest.param(doc(ca(TALOS.crt, TALOS.key)), [], id="valid-negative-control"),
    pytest.param(doc(ca(RSA_CA.crt, RSA_CA.key)), [], id="rsa-ca-is-usable"),
    pytest.param(
        doc(ca(GARBAGE_CRT, TALOS.key)),
        [
            "c.yaml:5 document 1: machine.ca.crt: not a PEM certificate "
            "(the CERTIFICATE block is not a valid X.509 certificate)"
        ],
        id="garbage-pem-body-in-valid-base64",
    ),
    pytest.param(
        doc(ca(b"no PEM here", TALOS.key)),
        ["c.yaml:5 document 1: machine.ca.crt: not a PEM certificate"],
        id="base64-of-text",
    ),
    pytest.param(
        doc(ca(TALOS.crt, OTHER.key)),
        [
            "c.yaml:6 document 1: machine.ca.key: "
            "does not match machine.ca.crt (the public keys differ)"
        ],
        id="key-of-another-ca",
    ),
    pytest.param(
        doc(ca(LEAF.crt, LEAF.key)),
        [
            "c.yaml:5 document 1: machine.ca.crt: "
            "not a CA certificate (BasicConstraints CA is not set)"
        ],
        id="non-ca-certificate",
    ),
    pytest.param(
        doc(ca(TALOS.crt, DSA_KEY)),
        [
            "c.yaml:6 document 1: machine.ca.key: unsupported key type: DSA "
            "(expected Ed25519, ECDSA P-256, P-384 or P-521, or RSA)"
        ],
        id="dsa-key",
    ),
    pytest.param(
        doc(ca(TALOS.key, TALOS.crt)),
        [
            "c.yaml:5 document 1: machine.ca.crt: "
            "not a PEM certificate (found ED25519 PRIVATE KEY instead of CERTIFICATE)",
            "c.yaml:6 document 1: machine.ca.key: "
            "not a PEM private key (found CERTIFICATE instead of PRIVATE KEY)",
        ],
        id="crt-and-key-swapped",
    ),
    pytest.param(
        doc(ca(TALOS.crt, b"")),
        ["c.yaml:6 document 1: machine.ca.key: is required on control-plane nodes"],
        id="control-plane-needs-the-key",
    ),
    pytest.param(doc(ca(TALOS.crt, b""), type_="worker"), [], id="worker-carries-crt-only"),
    pytest.param(doc(ca(TALOS.crt, None), type_="join"), [], id="join-carries-crt-only"),
    pytest.param(doc(type_="worker"), [], id="worker-without-machine-ca"),
    pytest.param(
        doc(ca(GARBAGE_CRT, b""), type_="worker"),
        [
            "c.yaml:5 document 1: machine.ca.crt: not a PEM certificate "
            "(the CERTIFICATE block is not a valid X.509 certificate)"
        ],
        id="worker-crt-still-checked",
    ),
    pytest.param(
        doc(ca(LEAF.crt, b""), type_="worker"),
        [
            "c.yaml:5 document 1: machine.ca.crt: "
            "not a CA certificate (BasicConstraints CA is not set)"
        ],
        id="worker-crt-must-be-a-ca",
    ),
]


@pytest.mark.parametrize(("text", "expected"), MACHINE_CA)
def test_machine_ca(text: str, expected: list[str]) -> None:
    assert errors(text) == expected


def _sa(key: bytes) -> str:
    return f"    serviceAccount:\n        key: {b64(key)}\n"


# Without a machine section the cluster starts at line 4 (controlPlane 5-6): keys from line 7.
CLUSTER = [
    pytest.param(
        doc(cluster=ca(K8S.crt, K8S.key) + ca(K8S.crt, K8S.key, name="aggregatorCA")), [], id="ok"
    ),
    pytest.param(
        doc(cluster=ca(K8S.crt, TALOS.key)),
        [
            "c.yaml:9 document 1: cluster.ca.key: "
            "does not match cluster.ca.crt (the public keys differ)"
        ],
        id="cluster-ca-key-of-another-ca",
    ),
    pytest.param(
        doc(cluster=ca(LEAF.crt, LEAF.key, name="aggregatorCA")),
        [
            "c.yaml:8 document 1: cluster.aggregatorCA.crt: "
            "not a CA certificate (BasicConstraints CA is not set)"
        ],
        id="aggregator-not-a-ca",
    ),
    pytest.param(
        doc(cluster="    etcd:\n" + ca(GARBAGE_CRT, K8S.key, indent=8)),
        [
            "c.yaml:9 document 1: cluster.etcd.ca.crt: not a PEM certificate "
            "(the CERTIFICATE block is not a valid X.509 certificate)"
        ],
        id="etcd-ca-garbage",
    ),
    pytest.param(
        doc(cluster=ca(K8S.crt, b""), type_="worker"), [], id="worker-cluster-ca-crt-only"
    ),
    pytest.param(doc(cluster=_sa(K8S.key)), [], id="service-account-ecdsa"),
    pytest.param(
        doc(cluster=_sa(TALOS.key)),
        [
            "c.yaml:8 document 1: cluster.serviceAccount.key: "
            "unsupported key type: Ed25519 (expected ECDSA or RSA)"
        ],
        id="service-account-ed25519",
    ),
    pytest.param(
        doc(cluster=_sa(K8S.crt)),
        [
            "c.yaml:8 document 1: cluster.serviceAccount.key: "
            "not a PEM private key (found CERTIFICATE instead of PRIVATE KEY)"
        ],
        id="service-account-not-a-key",
    ),
]


@pytest.mark.parametrize(("text", "expected"), CLUSTER)
def test_cluster_material(text: str, expected: list[str]) -> None:
    assert errors(text) == expected


REG = "    registries:\n        config:\n            reg.local:\n                tls:\n"  # 4-7


def test_registry_tls_material() -> None:
    client = pki.issue(K8S, kind="client")
    good = REG + ca(client.crt, client.key, indent=20, name="clientIdentity")
    good += f"                    ca: {b64(K8S.crt)}\n"
    assert errors(doc(good)) == []
    bad = REG + ca(client.crt, OTHER.key, indent=20, name="clientIdentity")
    bad += f"                    ca: {b64(GARBAGE_CRT)}\n"
    assert errors(doc(bad)) == [
        "c.yaml:10 document 1: machine.registries.config.reg.local.tls.clientIdentity.key: "
        "does not match machine.registries.config.reg.local.tls.clientIdentity.crt "
        "(the public keys differ)",
        "c.yaml:11 document 1: machine.registries.config.reg.local.tls.ca: not a PEM certificate "
        "(the CERTIFICATE block is not a valid X.509 certificate)",
    ]


def test_no_key_material_in_messages() -> None:
    text = doc(ca(TALOS.crt, OTHER.key) + "", cluster=ca(K8S.key, K8S.crt) + _sa(TALOS.key))
    rendered = "\n".join(errors(text))
    assert rendered.count("\n") == 3  # four problems
    for material in (TALOS.key, OTHER.key, K8S.key):
        assert b64(material)[:24] not in rendered
        body = b"".join(material.splitlines()[1:-1]).decode()
        assert body[:24] not in rendered


HOSTNAME = "    network:\n        hostname: {}\n"  # line 5
HOSTNAME_RULE = (
    "must be a hostname: lowercase letters, digits and '-' in dot-separated labels "
    "of 1-63 characters, not starting or ending with '-'"
)


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("node-1", None),
        ("node-1.example.org", None),
        ("bad_host!", HOSTNAME_RULE),
        ("Node-1", HOSTNAME_RULE),  # the node sets it as given: lowercase only
        ("-node", HOSTNAME_RULE),
        ("node..a", HOSTNAME_RULE),
        ("a" * 64, HOSTNAME_RULE),  # a label of 64
        (".".join(["a" * 32] * 2) + ".a", "must be at most 64 characters"),
    ],
)
def test_hostname_is_the_nodes_rule(name: str, message: str | None, tmp_path: Path) -> None:
    text = doc(HOSTNAME.format(name))
    expected = (
        [] if message is None else [f"c.yaml:5 document 1: machine.network.hostname: {message}"]
    )
    assert errors(text) == expected
    # the node takes exactly the names validate takes (configsource.parse validates first)
    if message is None:
        assert configsource.parse(text, "c.yaml").hostname == name
    else:
        with pytest.raises(ValidationError) as info:
            configsource.parse(text, "c.yaml")
        assert [p.render() for p in info.value.problems] == expected


def test_empty_hostname_is_unset_for_both() -> None:
    text = doc(HOSTNAME.format("''"))
    assert errors(text) == []
    assert configsource.parse(text, "c.yaml").hostname is None


def test_cert_sans() -> None:
    machine = "    certSANs: [10.0.0.1, node.example, '', 'bad host']\n"  # line 4
    cluster = "    apiServer:\n        certSANs: ['*.example.org', fd00::1, 'x y']\n"  # 8-9
    assert errors(doc(machine, cluster)) == [
        "c.yaml:4 document 1: machine.certSANs[2]: must not be empty",
        "c.yaml:4 document 1: machine.certSANs[3]: must be an IP address or a DNS name",
        "c.yaml:9 document 1: cluster.apiServer.certSANs[2]: must be an IP address or a DNS name",
    ]


@pytest.mark.parametrize("contract", ["", "v0.8"])
def test_configs_generated_from_fresh_secrets_validate(contract: str) -> None:
    configs = generate(
        GenerateInput("demo", "https://10.5.0.2:6443", talos_version=contract),
        pki.generate_secrets(contract),
    )
    for kind, cfg in configs.items():
        assert validate(load(encode(cfg), kind).config, "container").errors == [], kind


# -- the node at boot ---------------------------------------------------------------------


class _Console:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def log(self, message: str) -> None:
        self.lines.append(message)


def _boot_config_phase(state_dir: Path, text: str) -> tuple[object, list[str]]:
    """The node's loadConfig phase with ``text`` persisted in STATE."""
    from talos_init.node import Node, NodeOptions

    (state_dir / "state").mkdir(parents=True)
    (state_dir / "state" / configsource.CONFIG_NAME).write_text(text)
    console = _Console()
    node = Node(NodeOptions(mode="container", state_dir=state_dir), console, frozenset())  # type: ignore[arg-type]
    asyncio.run(node._load_config())
    return node.config, console.lines


def _generated(kind: str = "controlplane") -> str:
    configs = generate(GenerateInput("demo", "https://10.5.0.2:6443"), pki.generate_secrets())
    return encode(configs[kind])


def test_boot_with_a_saved_config_whose_ca_key_does_not_match_enters_maintenance(
    tmp_path: Path,
) -> None:
    text = _generated()
    key_line = next(
        i for i, line in enumerate(text.splitlines(), 1) if line.startswith("        key: ")
    )
    lines = text.splitlines(keepends=True)
    lines[key_line - 1] = f"        key: {b64(OTHER.key)}\n"  # machine.ca.key comes first
    config, log = _boot_config_phase(tmp_path, "".join(lines))
    saved = tmp_path / "state" / configsource.CONFIG_NAME
    assert config is None
    assert log == [
        "config rejected:",
        f"  {saved}:{key_line} document 1: machine.ca.key: "
        "does not match machine.ca.crt (the public keys differ)",
        "no config: entering maintenance mode",
    ]


def test_boot_with_a_good_saved_config_loads_it(tmp_path: Path) -> None:  # negative control
    config, log = _boot_config_phase(tmp_path, _generated())
    assert config is not None
    assert log == [f"config loaded from STATE ({tmp_path / 'state' / configsource.CONFIG_NAME})"]


def test_private_keys_read_per_config_are_bounded() -> None:
    """A hostile config cannot make validation derive thousands of public keys."""
    import time

    from libtalos.config.validate import MAX_PRIVATE_KEYS

    client = pki.issue(K8S, kind="client")
    entries = "".join(
        f"            r{i}.local:\n                tls:\n"
        + ca(client.crt, client.key, indent=20, name="clientIdentity")
        for i in range(200)
    )
    text = doc(ca(TALOS.crt, TALOS.key) + "    registries:\n        config:\n" + entries)
    start = time.monotonic()
    found = errors(text)
    assert time.monotonic() - start < 5  # generous: about 0.05 s here
    over = 200 + 1 - MAX_PRIVATE_KEYS  # machine.ca.key is the first key read
    assert len(found) == over
    assert found[0].endswith(
        f"machine.registries.config.r{MAX_PRIVATE_KEYS - 1}.local.tls.clientIdentity.key: "
        f"not checked: a config may hold at most {MAX_PRIVATE_KEYS} keys"
    )
    # negative control: up to the limit every key is read and nothing is reported
    assert errors(text.split(f"            r{MAX_PRIVATE_KEYS - 1}.local:")[0] + TAIL) == []
