"""Validation: table-driven, exact messages, every rule of Talos's and ours.

Talos's rules: docs/talos-facts.md#validation-rules.
"""

from __future__ import annotations

import pytest

from libtalos.config import Config, check_endpoint, load, validate
from libtalos.config.v1alpha1 import (
    ControlPlaneConfig,
    Device,
    MachineConfig,
    NetworkConfig,
    VIPConfig,
)
from libtalos.errors import UsageError, ValidationError

HEAD = "version: v1alpha1\nmachine:\n    type: {type}\n"  # lines 1-3
TAIL = "cluster:\n    controlPlane:\n        endpoint: {endpoint}\n"


def doc(
    machine: str = "",
    cluster: str = "",
    *,
    type_: str = "controlplane",
    endpoint: str = "https://10.5.0.2:6443",
) -> str:
    return HEAD.format(type=type_) + machine + TAIL.format(endpoint=endpoint) + cluster


def errors(text: str, mode: str = "container", exists: bool = True) -> list[str]:
    cfg = load(text, "c.yaml").config
    return [p.render() for p in validate(cfg, mode, path_exists=lambda _p: exists).errors]


IFACE = "    network:\n        interfaces:\n"  # lines 4-5

CASES = [
    pytest.param(doc(), [], id="valid-negative-control"),
    pytest.param(
        doc(IFACE + "            - interface: eth0\n              cidr: 10.5.0.300/24\n"),
        [
            "c.yaml:7 document 1: machine.network.interfaces[0].cidr: "
            "must be an address in CIDR notation (e.g. 192.168.2.5/24)"
        ],
        id="bad-cidr",
    ),
    pytest.param(
        doc(IFACE + "            - interface: eth0\n              cidr: 10.5.0.3\n"),
        [
            "c.yaml:7 document 1: machine.network.interfaces[0].cidr: "
            "must be an address in CIDR notation (e.g. 192.168.2.5/24)"
        ],
        id="cidr-without-prefix",
    ),
    pytest.param(
        doc(
            IFACE + "            - interface: eth0\n              cidr: 10.5.0.3/24\n"
            "              dhcp: true\n"
        ),
        [
            "c.yaml:7 document 1: machine.network.interfaces[0].cidr: "
            "cannot be set together with dhcp: true"
        ],
        id="dhcp-and-cidr",
    ),
    pytest.param(
        doc(IFACE + "            - cidr: 10.5.0.3/24\n"),
        ["c.yaml:6 document 1: machine.network.interfaces[0].interface: is required"],
        id="interface-name-required",
    ),
    pytest.param(
        doc(
            IFACE
            + "            - cidr: nonsense\n              dhcp: true\n              ignore: true\n"
        ),
        [],
        id="ignored-interface-not-checked",
    ),
    pytest.param(
        doc(
            IFACE + "            - interface: eth0\n              dhcp: true\n"
            "              vip:\n                  ip: 10.5.0.300\n"
        ),
        [
            "c.yaml:9 document 1: machine.network.interfaces[0].vip.ip: must be an IPv4 or IPv6 address"
        ],
        id="bad-vip",
    ),
    pytest.param(
        doc(
            IFACE + "            - interface: eth0\n              dhcp: true\n"
            "              vip:\n                  ip: 10.5.0.10\n",
            type_="worker",
        ),
        [
            "c.yaml:8 document 1: machine.network.interfaces[0].vip: "
            "virtual (shared) IP is not allowed on non-controlplane nodes"
        ],
        id="vip-on-worker",
    ),
    pytest.param(
        doc(
            IFACE + "            - interface: eth0\n              dhcp: true\n"
            "              vip:\n                  ip: 10.5.0.10\n",
            type_="join",
        ),
        [
            "c.yaml:8 document 1: machine.network.interfaces[0].vip: "
            "virtual (shared) IP is not allowed on non-controlplane nodes"
        ],
        id="vip-on-join",
    ),
    pytest.param(
        doc(
            IFACE + "            - interface: eth0\n              dhcp: true\n"
            "              vip:\n                  ip: fd00::10\n",
            type_="init",
        ),
        [],
        id="ipv6-vip-on-init-ok",
    ),
    pytest.param(
        doc(
            IFACE + "            - interface: eth0\n              routes:\n"
            "                  - network: 0.0.0.0\n                    gateway: 10.5.0.1.1\n"
        ),
        [
            "c.yaml:8 document 1: machine.network.interfaces[0].routes[0].network: "
            "must be a CIDR (e.g. 0.0.0.0/0)",
            "c.yaml:9 document 1: machine.network.interfaces[0].routes[0].gateway: "
            "must be an IPv4 or IPv6 address",
        ],
        id="bad-route",
    ),
    pytest.param(
        doc("    network:\n        nameservers: [1.1.1.1, dns.example]\n"),
        ["c.yaml:5 document 1: machine.network.nameservers[1]: must be an IPv4 or IPv6 address"],
        id="bad-nameserver",
    ),
    pytest.param(
        doc(
            "    disks:\n        - device: /dev/sdb\n          partitions:\n"
            "              - mountpoint: /var/a\n                size: 0\n"
            "              - mountpoint: /var/b\n                size: 100\n"
        ),
        [
            "c.yaml:8 document 1: machine.disks[0].partitions[0].size: "
            "a partition of size 0 (fill the disk) must be the last one"
        ],
        id="partition-size-0-not-last",
    ),
    pytest.param(
        doc(
            "    disks:\n        - device: /dev/sdb\n          partitions:\n"
            "              - mountpoint: /var/a\n                size: 100\n"
            "              - mountpoint: /var/b\n                size: 0\n"
        ),
        [],
        id="partition-size-0-last-ok",
    ),
    pytest.param(
        doc(cluster="    network:\n        dnsDomain: bad_domain!\n"),
        ["c.yaml:8 document 1: cluster.network.dnsDomain: must be a valid DNS name"],
        id="bad-dns-domain",
    ),
    pytest.param(
        doc(cluster="    network:\n        dnsDomain: 10.0.0.1\n"),
        ["c.yaml:8 document 1: cluster.network.dnsDomain: must be a valid DNS name"],
        id="ip-is-not-dns-domain",
    ),
    pytest.param(
        doc(cluster="    network:\n        podSubnets: [10.244.0.0/33]\n"),
        ["c.yaml:8 document 1: cluster.network.podSubnets[0]: must be a CIDR (e.g. 10.244.0.0/16)"],
        id="bad-pod-subnet",
    ),
    pytest.param(
        doc(cluster="    network:\n        cni:\n            name: custom\n", type_="init"),
        ["c.yaml:8 document 1: cluster.network.cni.urls: a custom CNI needs at least one URL"],
        id="custom-cni-without-urls",
    ),
    pytest.param(
        doc(cluster="    network:\n        cni:\n            name: calico\n", type_="init"),
        ["c.yaml:9 document 1: cluster.network.cni.name: must be one of: flannel, custom"],
        id="unknown-cni",
    ),
    pytest.param(
        doc(endpoint='""'),
        ["c.yaml:6 document 1: cluster.controlPlane.endpoint: is required"],
        id="endpoint-empty",
    ),
    pytest.param(
        doc(endpoint="http://10.5.0.2:6443"),
        [
            "c.yaml:6 document 1: cluster.controlPlane.endpoint: "
            "must be a URL with the https scheme; try: https://host:6443"
        ],
        id="endpoint-http",
    ),
    pytest.param(
        "version: v1alpha1\nmachine:\n    type: init\ncluster: {}\n",
        ["c.yaml:4 document 1: cluster.controlPlane.endpoint: is required"],
        id="endpoint-missing",
    ),
    pytest.param(
        doc(cluster="    token: ABC.def\n    aescbcEncryptionSecret: c2hvcnQ=\n"),
        [
            "c.yaml:7 document 1: cluster.token: must match [a-z0-9]{6}.[a-z0-9]{16}",
            "c.yaml:8 document 1: cluster.aescbcEncryptionSecret: must be base64 of 32 bytes",
        ],
        id="bad-token-and-aescbc",
    ),
    pytest.param(
        doc("    ca:\n        crt: not base64!\n        key: ''\n"),
        [
            "c.yaml:5 document 1: machine.ca.crt: must be base64 of a PEM certificate",
            "c.yaml:6 document 1: machine.ca.key: is required on control-plane nodes",
        ],
        id="bad-machine-ca",
    ),
    pytest.param(
        doc("    files:\n        - path: etc/x\n          op: replace\n          content: x\n"),
        [
            "c.yaml:5 document 1: machine.files[0].path: must be an absolute path",
            "c.yaml:6 document 1: machine.files[0].op: must be one of: create, append, overwrite",
        ],
        id="bad-file",
    ),
    pytest.param(
        doc(
            "    registries:\n        mirrors:\n            docker.io:\n"
            "                endpoints: [registry.local]\n"
        ),
        [
            "c.yaml:7 document 1: machine.registries.mirrors.docker.io.endpoints[0]: "
            "must be an http or https URL"
        ],
        id="bad-mirror-url",
    ),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_rules(text: str, expected: list[str]) -> None:
    assert errors(text) == expected


ENC = "    systemDiskEncryption:\n"  # line 4


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        pytest.param(
            "        ephemeral:\n            provider: luks2\n            keys:\n"
            "                - nodeID: {}\n                  slot: 0\n",
            [],
            id="valid",
        ),
        pytest.param(
            "        state:\n            provider: luks2\n            keys: []\n",
            [
                "c.yaml:7 document 1: machine.systemDiskEncryption.state.keys: at least one key is required"
            ],
            id="state-no-keys",  # v0.9 did not check STATE
        ),
        pytest.param(
            "        ephemeral:\n            provider: luks2\n",
            [
                "c.yaml:5 document 1: machine.systemDiskEncryption.ephemeral.keys: at least one key is required"
            ],
            id="ephemeral-keys-missing",
        ),
        pytest.param(
            "        ephemeral:\n            provider: luks2\n            keys:\n"
            "                - nodeID: {}\n                  slot: 1\n"
            "                - static: {passphrase: x}\n                  slot: 1\n",
            [
                "c.yaml:11 document 1: machine.systemDiskEncryption.ephemeral.keys[1].slot: "
                "duplicate slot (also used by keys[0])"
            ],
            id="duplicate-slot",
        ),
        pytest.param(
            "        state:\n            provider: luks2\n            keys:\n"
            "                - slot: 0\n",
            [
                "c.yaml:8 document 1: machine.systemDiskEncryption.state.keys[0]: a key needs nodeID or static"
            ],
            id="key-without-kind",
        ),
        pytest.param(
            "        state:\n            provider: luks2\n            keys:\n"
            "                - slot: 0\n                  nodeID: {}\n"
            "                  static: {passphrase: ''}\n",
            [
                "c.yaml:8 document 1: machine.systemDiskEncryption.state.keys[0]: "
                "a key must have exactly one of nodeID and static",
                "c.yaml:10 document 1: machine.systemDiskEncryption.state.keys[0].static.passphrase: "
                "must not be empty",
            ],
            id="key-with-both-kinds",
        ),
        pytest.param(
            "        state:\n            provider: luks1\n            cipher: aes-cbc-essiv\n"
            "            blockSize: 1000\n            keySize: 13\n            keys:\n"
            "                - nodeID: {}\n                  slot: 40\n",
            [
                "c.yaml:6 document 1: machine.systemDiskEncryption.state.provider: must be one of: luks2",
                "c.yaml:7 document 1: machine.systemDiskEncryption.state.cipher: "
                "must be one of: aes-xts-plain64",
                "c.yaml:8 document 1: machine.systemDiskEncryption.state.blockSize: "
                "must be one of 512, 1024, 2048, 4096",
                "c.yaml:9 document 1: machine.systemDiskEncryption.state.keySize: "
                "must be a positive multiple of 8 (bits)",
                "c.yaml:12 document 1: machine.systemDiskEncryption.state.keys[0].slot: "
                "must be between 0 and 31",
            ],
            id="bad-provider-cipher-sizes",
        ),
        pytest.param(
            "        state:\n            provider: ''\n            keys:\n"
            "                - nodeID: {}\n                  slot: 0\n",
            [
                "c.yaml:6 document 1: machine.systemDiskEncryption.state.provider: is required (luks2)"
            ],
            id="empty-provider",
        ),
    ],
)
def test_encryption_rules(body: str, expected: list[str]) -> None:
    assert errors(doc(ENC + body)) == expected


METAL_INSTALL = "    install:\n        disk: /dev/sdz\n"


@pytest.mark.parametrize(
    ("machine", "mode", "exists", "expected"),
    [
        pytest.param(METAL_INSTALL, "metal", True, [], id="metal-disk-exists"),
        pytest.param(
            METAL_INSTALL,
            "metal",
            False,
            ["c.yaml:5 document 1: machine.install.disk: install disk /dev/sdz does not exist"],
            id="metal-disk-missing",
        ),
        pytest.param(METAL_INSTALL, "container", False, [], id="container-does-not-install"),
        pytest.param(METAL_INSTALL, "cloud", False, [], id="cloud-does-not-install"),
        pytest.param(
            "",
            "metal",
            True,
            ["c.yaml:2 document 1: machine.install: is required in metal mode"],
            id="metal-install-missing",
        ),
        pytest.param(
            "    install:\n        image: x\n",
            "metal",
            True,
            ["c.yaml:4 document 1: machine.install.disk: is required in metal mode"],
            id="metal-disk-empty",
        ),
    ],
)
def test_modes(machine: str, mode: str, exists: bool, expected: list[str]) -> None:
    assert errors(doc(machine), mode, exists) == expected


def test_path_exists_receives_the_disk() -> None:
    seen: list[str] = []

    def exists(path: str) -> bool:
        seen.append(path)
        return True

    validate(load(doc(METAL_INSTALL)).config, "metal", path_exists=exists)
    assert seen == ["/dev/sdz"]


def test_warnings_apart_from_errors() -> None:
    text = "version: v1alpha1\ndebug: true\npersist: false\nmachine:\n    type: controlplane\n" + (
        TAIL.format(endpoint="https://10.5.0.2:6443")
    )
    result = validate(load(text, "c.yaml").config, "container")
    assert result.errors == [] and result.ok
    assert [p.render() for p in result.warnings] == [
        "c.yaml:2 document 1: debug: debug logging is enabled",
        "c.yaml:3 document 1: persist: persist is false: the config is fetched again on every boot",
    ]
    assert validate(load(doc(), "c.yaml").config, "container").warnings == []


def test_all_problems_at_once_and_raise() -> None:
    text = doc(
        IFACE + "            - interface: eth0\n              cidr: bad\n",
        cluster="    network:\n        dnsDomain: bad domain\n",
        endpoint="ftp://x",
    )
    result = validate(load(text, "c.yaml").config, "container")
    assert len(result.errors) == 3
    with pytest.raises(ValidationError) as info:
        result.raise_for_errors()
    assert str(info.value).startswith("3 problems found\n")


def test_config_built_in_code_has_paths_without_lines() -> None:
    cfg = Config(
        machine=MachineConfig(
            type="worker",
            network=NetworkConfig(interfaces=[Device(interface="eth0", vip=VIPConfig("10.0.0.1"))]),
        )
    )
    cfg.cluster.control_plane = ControlPlaneConfig(endpoint="https://h:6443")
    assert [p.render() for p in validate(cfg, "cloud").errors] == [
        "machine.network.interfaces[0].vip: "
        "virtual (shared) IP is not allowed on non-controlplane nodes"
    ]


def test_unknown_mode_is_a_usage_error() -> None:
    with pytest.raises(
        UsageError, match="unknown mode 'bare' \\(choose from cloud, container, metal\\)"
    ):
        validate(Config(), "bare")


def test_secrets_not_in_validation_messages() -> None:
    secret = "Sup3rSecretPassphrase"
    text = doc(
        ENC + "        state:\n            provider: luks2\n            keys:\n"
        f"                - static: {{passphrase: {secret}}}\n                  slot: 99\n",
        cluster=f"    token: {secret}\n    aescbcEncryptionSecret: {secret}\n",
    )
    result = validate(load(text, "c.yaml").config, "container")
    assert len(result.errors) == 3
    assert all(secret not in p.render() for p in result.errors)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("https://10.5.0.2:6443", None),
        ("https://[fd00::1]:6443", None),
        ("https://api.example.org", None),
        ("https://api.example.org:443/path", None),
        ("http://10.5.0.2:6443", "must be a URL with the https scheme"),
        ("10.5.0.2:6443", "must be a URL with the https scheme"),
        ("", "must be a URL with the https scheme"),
        ("https://", "has no host"),
        ("https://:6443", "has no host"),
        ("https://fd00::1:6443", "an IPv6 address must be in brackets"),
        ("https://[fd00::1:6443", "is not a valid URL"),
        ("https://host:99999", "has an invalid port"),
        ("https://host:http", "has an invalid port"),
        ("https://host:0", "has an invalid port"),
        ("https://host:", "has an invalid port"),
    ],
)
def test_check_endpoint(url: str, message: str | None) -> None:
    expected = None if message is None else f"{message}; try: https://host:6443"
    assert check_endpoint(url) == expected
