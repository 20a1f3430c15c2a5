"""Strict loading: every problem at once, each naming document, key path and line."""

from __future__ import annotations

import pytest

from libtalos.config import encode, load
from libtalos.errors import ParseError, ValidationError

OK = "version: v1alpha1\nmachine:\n    type: init\ncluster: {}\n"

CASES = [
    pytest.param(
        "machine: [\n  type: init\n",
        ParseError,
        ["c.yaml:3: malformed YAML: did not find expected ',' or ']'"],
        id="malformed-yaml",
    ),
    pytest.param(
        "version: v1alpha1\nmachine:\n    type: init\n    typo: 1\ncluster: {}\n",
        ValidationError,
        ["c.yaml:4 document 1: machine.typo: unknown key"],
        id="unknown-key-with-line",
    ),
    pytest.param(
        "machine:\n    Type: init\ncluster: {}\n",
        ValidationError,
        [
            "c.yaml:1 document 1: machine.type: is required",
            "c.yaml:2 document 1: machine.Type: unknown key (did you mean 'type'?)",
        ],
        id="wrong-case-key",
    ),
    pytest.param(
        "version: v1alpha1\n"
        "debug: 'yes'\n"
        "machine:\n"
        "    type: init\n"
        "    network:\n"
        "        interfaces:\n"
        "            - interface: eth0\n"
        "              cidr: 10\n"
        "              mtu: '1500'\n"
        "              routes: {}\n"
        "cluster:\n"
        "    token: 5\n"
        "    extraManifests: [a, [b]]\n",
        ValidationError,
        [
            "c.yaml:2 document 1: debug: must be a boolean (got string)",
            "c.yaml:8 document 1: machine.network.interfaces[0].cidr: must be a string (got integer)",
            "c.yaml:9 document 1: machine.network.interfaces[0].mtu: must be an integer (got string)",
            "c.yaml:10 document 1: machine.network.interfaces[0].routes: must be a list (got mapping)",
            "c.yaml:12 document 1: cluster.token: must be a string (got integer)",
            "c.yaml:13 document 1: cluster.extraManifests[1]: must be a string (got list)",
        ],
        id="wrong-types-all-at-once",
    ),
    pytest.param(
        "machine:\n    type: init\n    install:\n        wipe: 1\n        bootloader: 'true'\ncluster: {}\n",
        ValidationError,
        [
            "c.yaml:4 document 1: machine.install.wipe: must be a boolean (got integer)",
            "c.yaml:5 document 1: machine.install.bootloader: must be a boolean (got string)",
        ],
        id="int-and-string-are-not-bool",
    ),
    pytest.param(
        "machine:\n    type: init\n    disks:\n        - device: /dev/sdb\n          partitions:\n"
        "              - size: true\ncluster: {}\n",
        ValidationError,
        [
            "c.yaml:6 document 1: machine.disks[0].partitions[0].size: "
            "must be an integer (got boolean)"
        ],
        id="bool-is-not-int",
    ),
    pytest.param("", ParseError, ["c.yaml: no YAML document in the input"], id="empty-input"),
    pytest.param(
        "~\n", ParseError, ["c.yaml:1 document 1: document is empty (null)"], id="null-doc"
    ),
    pytest.param(
        "machine:\n    type: init\n    type: worker\ncluster: {}\n",
        ParseError,
        ["c.yaml:3 document 1: machine.type: duplicate key (first defined on line 2)"],
        id="duplicate-key",
    ),
    pytest.param(
        "version: v1alpha1\ncluster: {}\n",
        ValidationError,
        ["c.yaml:1 document 1: machine: is required"],
        id="missing-machine",
    ),
    pytest.param(
        "machine:\n    type: init\n",
        ValidationError,
        ["c.yaml:1 document 1: cluster: is required"],
        id="missing-cluster",
    ),
    pytest.param(
        "version: v1alpha1\n"
        "machine:\n"
        "    disks:\n"
        "        - partitions: []\n"
        "    systemDiskEncryption:\n"
        "        state:\n"
        "            keys:\n"
        "                - nodeID: {}\n"
        "cluster: {}\n",
        ValidationError,
        [
            "c.yaml:2 document 1: machine.type: is required",
            "c.yaml:4 document 1: machine.disks[0].device: is required",
            "c.yaml:6 document 1: machine.systemDiskEncryption.state.provider: is required",
            "c.yaml:8 document 1: machine.systemDiskEncryption.state.keys[0].slot: is required",
        ],
        id="missing-required-nested",
    ),
    pytest.param(
        "machine:\n    type: ~\n    network: ~\ncluster: {}\n",
        ValidationError,
        ["c.yaml:2 document 1: machine.type: must be a string (got null)"],
        id="null-value",
    ),
    pytest.param(
        "machine: {type: init}\ncluster: {}\n---\nmachine: {}\n",
        ValidationError,
        ["c.yaml:4 document 2: expected one machine config document, found 2"],
        id="two-documents",
    ),
    pytest.param(
        "apiVersion: v1alpha1\nkind: SideroLinkConfig\n",
        ValidationError,
        [
            "c.yaml:2 document 1: kind: kind SideroLinkConfig is not supported "
            "(only the v1alpha1 machine config is)"
        ],
        id="other-kind",
    ),
    pytest.param(
        "foo: bar\n",
        ValidationError,
        ["c.yaml:1 document 1: not a machine config (no `version: v1alpha1` and no `machine` key)"],
        id="not-a-config",
    ),
    pytest.param(
        "version: v1alpha2\nmachine: {}\n",
        ValidationError,
        ["c.yaml:1 document 1: version: unsupported version (supported: v1alpha1)"],
        id="other-version",
    ),
    pytest.param(
        "- machine\n",
        ValidationError,
        ["c.yaml:1 document 1: a machine config must be a mapping"],
        id="not-a-mapping",
    ),
]


@pytest.mark.parametrize(("text", "error", "messages"), CASES)
def test_load_errors(text: str, error: type[Exception], messages: list[str]) -> None:
    with pytest.raises(error) as info:
        load(text, "c.yaml")
    assert type(info.value) is error
    assert [p.render() for p in info.value.problems] == messages  # type: ignore[attr-defined]


def test_valid_document_loads() -> None:  # the negative control of the table above
    loaded = load(OK, "c.yaml")
    assert loaded.config.machine.type == "init"
    assert loaded.text == OK
    assert loaded.config.source_document is loaded.document


def test_version_is_optional_when_machine_is_present() -> None:
    assert load("machine:\n    type: init\ncluster: {}\n").config.version == "v1alpha1"


def test_pass_through_keeps_bytes() -> None:
    text = "# a comment\nmachine:\n    type: init   # odd spacing\ncluster: {}\n"
    loaded = load(text)
    assert loaded.text == text
    assert encode(loaded.config, comments=False) != text  # re-encoding would not keep them


def test_secret_values_never_in_messages() -> None:
    secret = "s3cr3t-passphrase-value"
    text = (
        "machine:\n"
        "    type: init\n"
        f"    token: [{secret}]\n"
        "    systemDiskEncryption:\n"
        "        ephemeral:\n"
        "            provider: luks2\n"
        "            keys:\n"
        f"                - static: {{passphrase: [{secret}]}}\n"
        "                  slot: 0\n"
        "                  passphrase: 1\n"
        "cluster:\n"
        f"    aescbcEncryptionSecret: {{x: {secret}}}\n"
    )
    with pytest.raises(ValidationError) as info:
        load(text, "c.yaml")
    assert len(info.value.problems) == 4
    assert secret not in str(info.value)
