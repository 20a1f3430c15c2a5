"""The field-docs machinery: examples, omission rules, YAML emitting, coverage, docgen."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from libtalos import docgen
from libtalos.config import Config, encode, load, redacted, schema, to_data
from libtalos.config.v1alpha1 import (
    CertAndKey,
    InstallConfig,
    KubeletConfig,
    MachineConfig,
    NetworkConfig,
)
from libtalos.yamlio import Document, format_path, iter_paths

DATA = Path(__file__).resolve().parents[2] / "data" / "config"
REFERENCE = Path(__file__).resolve().parents[3] / "docs" / "reference"


def _documented_paths() -> set[str]:  # e.g. machine.network.interfaces[].cidr
    return {path for path, _ in docgen.iter_fields()}


@pytest.mark.parametrize(
    ("path", "mf"), list(docgen.iter_fields()), ids=[p for p, _ in docgen.iter_fields()]
)
def test_every_example_fits_its_field(path: str, mf: schema.ModelField) -> None:
    for example in mf.doc.examples:
        decoder = schema.Decoder(Document({"x": example.value}, source="example"))
        decoder.value(mf.type, example.value, ("x",))
        assert decoder.problems == [], path
        if mf.doc.values and isinstance(example.value, str):
            assert example.value in mf.doc.values


def test_full_example_covers_every_key_and_round_trips() -> None:
    text = (DATA / "full.yaml").read_text()
    loaded = load(text, "full.yaml")
    # every documented field (each model's each field) is used at least once in the file
    seen = set()
    for p in iter_paths(loaded.document.data):
        doc = docgen.field_doc(format_path(p)) if p else None
        if doc is not None:
            seen.add(id(doc))
    missing = [path for path, mf in docgen.iter_fields() if id(mf.doc) not in seen]
    assert missing == []
    for comments in (True, False):
        again = load(encode(loaded.config, comments=comments))
        assert again.config == loaded.config


def test_omission_rules() -> None:
    cfg = Config(
        machine=MachineConfig(
            type="init",
            kubelet=KubeletConfig(),
            network=NetworkConfig(),
            install=InstallConfig(disk="/dev/sda"),
        )
    )
    assert to_data(cfg) == {
        "version": "v1alpha1",
        "debug": False,  # not omitempty
        "persist": True,
        "machine": {
            "type": "init",
            "kubelet": {},  # present but empty sections are written
            "network": {},
            "install": {"disk": "/dev/sda", "wipe": False},  # wipe is always written
        },
        "cluster": {},
    }


def test_commented_output_shape() -> None:
    cfg = Config(machine=MachineConfig(type="init", network=NetworkConfig()))
    text = encode(cfg)
    lines = text.splitlines()
    assert lines[0] == "version: v1alpha1 # The schema used to decode the document."
    assert "# Machine-specific settings." in lines and "machine:" in lines
    assert "    network: {}" in lines
    # an unset field with an example becomes a commented example, indented under its parent
    assert "        # # The machine's host name." in lines
    assert "        # hostname: worker-1" in lines
    assert "    # # Extra disks to partition, format and mount." in lines
    # 4-space indentation, and the comments do not change the data
    assert yaml.safe_load(text) == to_data(cfg)


TRICKY = [
    "yes",
    "no",
    "on",
    "1",
    "0644",
    "1e3",
    "",
    " lead",
    "trail ",
    "a: b",
    "#x",
    "x #y",
    "- x",
    "@x",
    "`x",
    "null",
    "~",
    "[a]",
    "{a: 1}",
    "'q'",
    '"d"',
    "multi\nline",
    "end\n",
    "two\n\n",
    "\nlead newline",
    "  indented\nblock",
    "tab\there",
    "é ü 中",
    "a\\b",
    "%x",
    "*x",
    "&x",
    "!x",
    "x\n  y\n",
    "line\r\nwindows",
]


@pytest.mark.parametrize("value", TRICKY)
@pytest.mark.parametrize("comments", [True, False])
def test_strings_round_trip(value: str, comments: bool) -> None:
    cfg = Config(machine=MachineConfig(type="init", env={"K": value}, cert_sans=[value]))
    cfg.machine.files = []
    again = load(encode(cfg, comments=comments)).config
    assert again.machine.env == {"K": value}
    assert again.machine.cert_sans == [value]


def test_plain_strings_are_written_as_pyyaml_writes_them() -> None:
    """The fast path for plain strings gives PyYAML's answer, for every string of a full
    config and for words that resolve to other types."""
    from libtalos.config.schema import _PLAIN, _WORDS, _str_scalar, _yaml_scalar

    strings: set[str] = set(TRICKY)

    def walk(node: object) -> None:
        if isinstance(node, str):
            strings.add(node)
        elif isinstance(node, dict):
            for k, v in node.items():
                walk(k)
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(yaml.safe_load((DATA / "full.yaml").read_text()))
    words = ["yes", "No", "TRUE", "off", "On", "Null", "y", "N", "yEs", "nULL", "inf", "NaN"]
    strings.update(["a", "a=", "A+/=", "k8s.gcr.io/pause:3.2", "x-y_z.w", "LS0tLS1C+/==", *words])
    fast = 0
    for value in strings:
        assert _str_scalar(value) == _yaml_scalar(value), value
        assert yaml.safe_load(f"k: {_str_scalar(value)}") == {"k": value}, value
        fast += bool(_PLAIN.fullmatch(value)) and value.lower() not in _WORDS
    assert fast > 20  # the fast path is taken, so the comparison is not vacuous


def test_redacted_masks_every_secret() -> None:
    loaded = load((DATA / "full.yaml").read_text())
    data = redacted(loaded.config)
    text = schema.dump_plain(data)
    for secret in (
        "q2nb8w.l8rsqijsvwvmkvuz",
        "correct horse",
        "c2VjcmV0",
        "dXNlcjpwYXNz",
        "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCg==",
    ):
        assert secret not in text
    assert data["machine"]["ca"]["crt"] == "LS0tLS1CRUdJTiBDRVJUSUZJQ0FURS0tLS0tCg=="  # type: ignore[index]
    assert "LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCg==" in (DATA / "full.yaml").read_text()


def test_secret_fields_are_marked() -> None:
    secret = {p for p, mf in docgen.iter_fields() if mf.doc.secret}
    assert {
        "machine.token",
        "machine.ca.key",
        "cluster.token",
        "cluster.aescbcEncryptionSecret",
        "cluster.ca.key",
        "cluster.etcd.ca.key",
        "cluster.serviceAccount.key",
        "machine.systemDiskEncryption.ephemeral.keys[].static.passphrase",
        "machine.registries.config.*.auth.password",
    } <= secret
    assert "cluster.ca.crt" not in secret


def test_committed_reference_is_fresh(capsys: pytest.CaptureFixture[str]) -> None:
    assert docgen.main(["--check", str(REFERENCE)]) == 0


def test_docgen_check_detects_stale(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert docgen.main(["--check", str(tmp_path)]) == 1  # missing
    assert docgen.main([str(tmp_path)]) == 0
    assert docgen.main(["--check", str(tmp_path)]) == 0
    ref = tmp_path / "v1alpha1.md"
    ref.write_text(ref.read_text().replace("cluster.local", "cluster.example"))
    assert docgen.main(["--check", str(tmp_path)]) == 1
    assert "v1alpha1.md stale" in capsys.readouterr().err
    assert docgen.main([]) == 2


def test_reference_lists_every_key() -> None:
    text = docgen.render()
    for path in _documented_paths():
        assert f"`{path}`" in text


def test_describe() -> None:
    assert docgen.describe("machine.install.disk") == "The disk Talos is installed to."
    assert docgen.describe("machine.network.interfaces[3].vip.ip").startswith("The shared")
    assert docgen.describe("machine.registries.mirrors.docker.io.endpoints").startswith(
        "The mirror"
    )
    assert docgen.describe("machine.nope") == ""
    doc = docgen.field_doc("cluster.proxy.mode")
    assert doc is not None and doc.values == ("iptables", "ipvs", "userspace")


def test_cert_and_key_always_written() -> None:
    assert schema.to_data(CertAndKey(crt="x")) == {"crt": "x", "key": ""}


def test_json_schema_accepts_what_load_accepts() -> None:
    js = docgen.json_schema()
    assert js["properties"]["machine"]["properties"]["type"]["enum"] == [
        "init",
        "controlplane",
        "join",
        "worker",
    ]
    iface = js["properties"]["machine"]["properties"]["network"]["properties"]["interfaces"]
    assert iface["items"]["additionalProperties"] is False
    assert iface["items"]["properties"]["vip"]["properties"]["ip"]["type"] == "string"
    assert js["required"] == ["machine", "cluster"]
