"""The rules on what the node applies itself (files, sysctls, interfaces): exact messages.

talos-init checks a config with these rules only (``configsource.parse`` is load + validate),
so each case also runs through the node's parser, and the node's view of the model is checked.
"""

from __future__ import annotations

import pytest

from libtalos.config import load, validate
from libtalos.config.v1alpha1 import Device, MachineFile
from libtalos.errors import DocumentError, ValidationError
from talos_init import configsource

HEAD = "version: v1alpha1\nmachine:\n    type: controlplane\n"  # lines 1-3
TAIL = "cluster:\n    controlPlane:\n        endpoint: https://10.5.0.2:6443\n"
IFACE = "    network:\n        interfaces:\n"  # lines 4-5
FILES = "    files:\n"  # line 4


def doc(machine: str) -> str:
    return HEAD + machine + TAIL


def problems(text: str) -> list[str]:
    """The rendered problems of ``text`` (from loading or validating it), checking that the
    node's parser reports exactly the same."""
    try:
        cfg = load(text, "c.yaml").config
    except ValidationError as exc:
        found = [p.render() for p in exc.problems]
    else:
        found = [p.render() for p in validate(cfg, "container").errors]
    if found:
        with pytest.raises(DocumentError) as info:
            configsource.parse(text, "c.yaml")
        assert [p.render() for p in info.value.problems] == found
    else:
        configsource.parse(text, "c.yaml")
    return found


CASES = [
    pytest.param(
        doc(FILES + "        - path: /var/x\n          content: x\n"),
        [],
        id="file-negative-control",
    ),
    pytest.param(
        doc(FILES + "        - path: /var/x\n          permissions: 0o644\n          content: x\n"),
        ["c.yaml:6 document 1: machine.files[0].permissions: must be an integer (got string)"],
        id="file-mode-yaml12-octal-is-a-string",
    ),
    pytest.param(
        doc(
            FILES + "        - path: /var/x\n          content: x\n          permissions: 4096\n"
            "        - path: /var/y\n          content: y\n          permissions: -1\n"
        ),
        [
            "c.yaml:7 document 1: machine.files[0].permissions: must be a file mode",
            "c.yaml:10 document 1: machine.files[1].permissions: must be a file mode",
        ],
        id="file-mode-out-of-range",
    ),
    pytest.param(
        doc(FILES + "        - path: /var/x\n          content: x\n          permissions: 07777\n"),
        [],
        id="file-mode-largest",
    ),
    pytest.param(
        doc(FILES + "        - path: ''\n          content: x\n"),
        ["c.yaml:5 document 1: machine.files[0].path: must be an absolute path"],
        id="file-path-empty",
    ),
    pytest.param(
        doc(FILES + "        - path: relative/hello\n          content: x\n"),
        ["c.yaml:5 document 1: machine.files[0].path: must be an absolute path"],
        id="file-path-relative",
    ),
    pytest.param(
        doc(FILES + "        - path: /var/x\n          op: create\n"),
        ["c.yaml:5 document 1: machine.files[0].content: is required"],
        id="file-content-required",
    ),
    pytest.param(
        doc(FILES + "        - path: /var/x\n          content: x\n          mode: 1\n"),
        ["c.yaml:7 document 1: machine.files[0].mode: unknown key"],
        id="file-unknown-key",
    ),
    pytest.param(
        doc(
            "    sysctls:\n        net.ipv4.ip_forward: '1'\n        Net.IPv4.x: '1'\n"
            "        kernel/panic: '1'\n"
        ),
        [
            "c.yaml:6 document 1: machine.sysctls.Net.IPv4.x: not a sysctl name",
            "c.yaml:7 document 1: machine.sysctls.kernel/panic: not a sysctl name",
        ],
        id="sysctl-names",
    ),
    pytest.param(
        doc("    sysctls:\n        net.ipv4.ip_forward: 1\n"),
        [
            "c.yaml:5 document 1: machine.sysctls.net.ipv4.ip_forward: must be a string (got integer)"
        ],
        id="sysctl-value-string",
    ),
    pytest.param(
        doc(
            IFACE + "            - interface: this-name-is-too-long\n              dhcp: true\n"
            "            - interface: eth/0\n              dhcp: true\n"
        ),
        [
            "c.yaml:6 document 1: machine.network.interfaces[0].interface: "
            "must be an interface name",
            "c.yaml:8 document 1: machine.network.interfaces[1].interface: "
            "must be an interface name",
        ],
        id="interface-names",
    ),
    pytest.param(
        doc(
            IFACE
            + "            - interface: eth0\n              dhcp: true\n              mtu: 20\n"
            "            - interface: eth1\n              dhcp: true\n              mtu: 65536\n"
        ),
        [
            "c.yaml:8 document 1: machine.network.interfaces[0].mtu: must be between 68 and 65535",
            "c.yaml:11 document 1: machine.network.interfaces[1].mtu: must be between 68 and 65535",
        ],
        id="mtu-range",
    ),
    pytest.param(
        doc(
            IFACE
            + "            - interface: eth0\n              dhcp: true\n              mtu: 68\n"
            "            - interface: eth1\n              dhcp: true\n              mtu: 65535\n"
            "            - interface: eth2\n              dhcp: true\n              mtu: 0\n"
        ),
        [],
        id="mtu-bounds-and-unset",
    ),
    pytest.param(
        doc(
            IFACE + "            - interface: eth0\n              routes:\n"
            "                  - gateway: 10.5.0.1\n                    metric: x\n"
        ),
        [
            "c.yaml:8 document 1: machine.network.interfaces[0].routes[0].network: is required",
            "c.yaml:9 document 1: machine.network.interfaces[0].routes[0].metric: "
            "must be an integer (got string)",
        ],
        id="route-network-required-metric-integer",
    ),
    pytest.param(
        doc(IFACE + "            - interface: eth0\n              ignore: 'no'\n"),
        [
            "c.yaml:7 document 1: machine.network.interfaces[0].ignore: must be a boolean (got string)"
        ],
        id="ignore-boolean",
    ),
    pytest.param(
        doc("    network: [1]\n"),
        ["c.yaml:4 document 1: machine.network: must be a mapping (got list)"],
        id="network-not-a-mapping",
    ),
    pytest.param(
        doc("").replace("type: controlplane", "type: banana"),
        ["c.yaml:3 document 1: machine.type: must be one of: init, controlplane, join, worker"],
        id="machine-type",
    ),
]


@pytest.mark.parametrize(("text", "expected"), CASES)
def test_node_rules(text: str, expected: list[str]) -> None:
    assert problems(text) == expected


def test_file_defaults_when_unset() -> None:
    assert (MachineFile().mode(), MachineFile().operation()) == (0o644, "create")
    assert MachineFile(permissions=0o600, op="append").mode() == 0o600
    assert MachineFile(permissions=0o600, op="append").operation() == "append"


def test_node_view_reads_the_model() -> None:
    text = doc(
        "    network:\n        hostname: cp-1\n        interfaces:\n"
        "            - interface: eth0\n              cidr: 10.5.0.2/24\n"
        "              routes:\n                  - network: 0.0.0.0/0\n"
        "                    gateway: 10.5.0.1\n"
        "            - interface: eth1\n              ignore: true\n"
        "    files:\n        - path: /var/a\n          content: a\n"
        "        - path: /var/b\n          content: b\n          permissions: 0600\n"
        "          op: append\n"
        "    sysctls:\n        net.ipv4.ip_forward: '1'\n"
    )
    config = configsource.parse(text, "c.yaml")
    assert config.model.machine.type == config.machine_type == "controlplane"
    assert config.hostname == "cp-1"
    assert [(f.path, f.content, f.permissions, f.op) for f in config.files] == [
        ("/var/a", "a", 0o644, "create"),
        ("/var/b", "b", 0o600, "append"),
    ]
    assert config.sysctls == {"net.ipv4.ip_forward": "1"}
    eth0, eth1 = config.interfaces
    assert isinstance(eth0, Device)
    assert (eth0.interface, eth0.cidr, eth0.routes[0].gateway) == (
        "eth0",
        "10.5.0.2/24",
        "10.5.0.1",
    )
    assert (eth1.interface, eth1.ignore) == ("eth1", True)
    assert not hasattr(config, "data")


def test_node_view_of_a_bare_config() -> None:
    config = configsource.parse(doc(""), "c.yaml")
    assert (config.hostname, config.files, config.sysctls, config.interfaces) == (None, (), {}, ())
    assert config.text == doc("") and config.source == "c.yaml"


def test_ignored_interface_is_not_checked_by_the_node_either() -> None:
    text = doc(
        IFACE + "            - cidr: nonsense\n              mtu: 1\n              ignore: true\n"
    )
    assert problems(text) == []
