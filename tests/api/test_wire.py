"""Pure helpers of libtalos.api: targets, per-node errors, the kubeconfig archive, pins, the
generated messages' field numbers."""

from __future__ import annotations

import base64
import io
import tarfile

import pytest
from cryptography.hazmat.primitives import serialization

from libtalos import pki
from libtalos.api import common_pb2, machine_pb2, tls, wire
from libtalos.errors import PKIError, UsageError


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("10.5.0.2", ("10.5.0.2", 50000)),
        ("10.5.0.2:50001", ("10.5.0.2", 50001)),
        ("[fd00::2]:7", ("fd00::2", 7)),
        ("fd00::2", ("fd00::2", 50000)),
        ("node-1", ("node-1", 50000)),
    ],
)
def test_split_target(target, expected):
    assert wire.split_target(target) == expected


def test_error_message_decodes_as_any_reply_and_splits():
    reply = wire.error_message(machine_pb2.VersionResponse, "10.5.0.9", "boom", 14)
    ok = machine_pb2.Version()
    ok.metadata.hostname = "10.5.0.2"
    reply.messages.append(ok)
    good, errors = wire.split_errors(reply.messages)
    assert [m.metadata.hostname for m in good] == ["10.5.0.2"]
    assert errors == [wire.NodeError("10.5.0.9", "boom", 14)]


def test_field_numbers_match_talos():
    """The wire contract of docs/talos-facts.md#machine-api: field numbers, not only names."""
    d = machine_pb2.ApplyConfigurationRequest.DESCRIPTOR.fields_by_name
    assert {n: d[n].number for n in d} == {
        "data": 1,
        "on_reboot": 2,
        "immediate": 3,
        "mode": 4,
        "dry_run": 5,
        "try_mode_timeout": 6,
    }
    m = common_pb2.Metadata.DESCRIPTOR.fields_by_name
    assert (m["hostname"].number, m["error"].number, m["status"].number) == (1, 2, 3)
    assert m["status"].message_type.full_name == "google.rpc.Status"
    for name in (
        "ApplyConfiguration",
        "Bootstrap",
        "Version",
        "Reboot",
        "Shutdown",
        "Reset",
        "ServiceList",
        "ServiceStart",
        "ServiceStop",
        "ServiceRestart",
        "EtcdMembers",
    ):
        msg = getattr(machine_pb2, name).DESCRIPTOR
        assert msg.fields_by_name["metadata"].number == 1, name
        assert msg.fields_by_name["metadata"].message_type.full_name == "common.Metadata"
    svc = machine_pb2.DESCRIPTOR.services_by_name["MachineService"]
    assert svc.full_name == "machine.MachineService"
    assert svc.methods_by_name["Kubeconfig"].output_type.full_name == "common.Data"


def test_v09_request_bytes_decode_in_v1_shape():
    """A v0.9 client's ApplyConfigurationRequest{data, on_reboot} keeps its meaning."""
    raw = b"\x0a\x03abc\x10\x01"  # field 1 bytes "abc", field 2 varint 1
    req = machine_pb2.ApplyConfigurationRequest.FromString(raw)
    assert req.data == b"abc" and req.on_reboot and req.mode == 0


def test_kubeconfig_archive_round_trip_and_mode():
    data = wire.kubeconfig_archive(b"apiVersion: v1\n")
    with tarfile.open(fileobj=io.BytesIO(data), mode="r:gz") as tar:
        (member,) = tar.getmembers()
    assert member.name == "kubeconfig" and member.mode == 0o600
    assert wire.kubeconfig_from_archive(data) == b"apiVersion: v1\n"


def test_kubeconfig_archive_rejects_garbage():
    with pytest.raises(wire.ArchiveError):
        wire.kubeconfig_from_archive(b"not a tarball")


def test_pin_parse_and_check():
    ca = pki.new_ca(algorithm="ed25519", organizations=["x"])
    der = pki.load_certificate(ca.crt).public_bytes(serialization.Encoding.DER)
    pin = tls.parse_pin(pki.spki_fingerprint(ca.crt))
    tls.check_pin(der, [pin])
    with pytest.raises(PKIError, match="does not match"):
        tls.check_pin(der, [bytes(32)])
    with pytest.raises(UsageError):
        tls.parse_pin(base64.b64encode(b"short").decode())


def test_talos_ed25519_key_label_loads_into_ssl():
    ca = pki.new_ca(algorithm="ed25519", organizations=["talos"])
    leaf = pki.issue(ca, kind="server", ip_addresses=["127.0.0.1"])
    assert b"ED25519 PRIVATE KEY" in leaf.key
    tls.server_context(leaf.crt, leaf.key, client_ca=ca.crt)  # OpenSSL rejects the label itself


def test_mismatched_key_is_pki_error():
    ca = pki.new_ca(algorithm="ed25519", organizations=["talos"])
    a = pki.issue(ca, kind="server")
    b = pki.issue(ca, kind="server")
    with pytest.raises(PKIError):
        tls.server_context(a.crt, b.key)
