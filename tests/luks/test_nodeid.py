"""Talos v0.9's nodeID key: vectors, refusals, and the command that prints it."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from luks.conftest import Result
from talos_luks import nodeid
from talos_luks.errors import LuksError

UUID = "5ab9fa8c-6fd4-4c3b-8a4e-2f0c3b6e1d7a"


@pytest.mark.parametrize(
    ("label", "expected"),
    [
        ("STATE", b"5ab9fa8c-6fd4-4c3b-8a4e-2f0c3b6e1d7aSTATE"),
        ("EPHEMERAL", b"5ab9fa8c-6fd4-4c3b-8a4e-2f0c3b6e1d7aEPHEMERAL"),
    ],
)
def test_vectors(label: str, expected: bytes) -> None:
    key = nodeid.derive(label, UUID)
    assert key == expected
    assert len(key) == {"STATE": 41, "EPHEMERAL": 45}[label]


def test_uuid_is_normalised_to_canonical_lowercase() -> None:
    assert nodeid.derive("STATE", UUID.upper()) == nodeid.derive("STATE", UUID)
    assert nodeid.derive("STATE", "{" + UUID.replace("-", "") + "}") == nodeid.derive("STATE", UUID)


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("00000000-0000-0000-0000-000000000000", "nil UUID"),
        ("ffffffff-ffff-ffff-ffff-ffffffffffff", "all-ones UUID"),
        ("11111111-1111-1111-1111-111111111111", "too little entropy"),
        # 19 zeros out of 36 characters: more than half, Talos's entropy check refuses it
        ("00000000-0000-0000-000b-cdef12345678", "too little entropy"),
        ("not-a-uuid", "not a UUID"),
    ],
)
def test_refused_uuids(value: str, reason: str) -> None:
    with pytest.raises(LuksError, match=reason):
        nodeid.derive("STATE", value)


def test_entropy_boundary_is_half_the_string() -> None:
    # 18 zeros out of 36: exactly half, accepted (Talos refuses only "more than len/2")
    value = "00000000-0000-0000-00ab-cdef12345678"
    assert value.count("0") == 18
    assert nodeid.derive("STATE", value) == (value + "STATE").encode()


def test_unknown_label_is_refused() -> None:
    with pytest.raises(LuksError, match="--label"):
        nodeid.derive("BOOT", UUID)


def test_system_uuid_read_from_sysfs_file(tmp_path: Path) -> None:
    f = tmp_path / "product_uuid"
    f.write_text(UUID.upper() + "\n")
    assert nodeid.read_system_uuid(f) == UUID
    with pytest.raises(LuksError, match="pass --uuid|no SMBIOS"):
        nodeid.read_system_uuid(tmp_path / "missing")


def test_derive_key_command_prints_the_bytes_only(run: Callable[..., Result]) -> None:
    r = run("derive-key", "nodeid", "--label", "EPHEMERAL", "--uuid", UUID)
    assert r.code == 0, r.err
    assert r.out == UUID + "EPHEMERAL"  # no newline: the output is the key file


def test_derive_key_to_a_file_is_0600(run: Callable[..., Result], tmp_path: Path) -> None:
    out = tmp_path / "state.key"
    r = run("derive-key", "nodeid", "--label", "STATE", "--uuid", UUID, "-o", str(out))
    assert r.code == 0, r.err
    assert out.read_bytes() == (UUID + "STATE").encode()
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o600
    assert run("derive-key", "nodeid", "--label", "STATE", "--uuid", UUID, "-o", str(out)).code == 1


def test_derive_key_command_refusals(run: Callable[..., Result]) -> None:
    r = run(
        "derive-key",
        "nodeid",
        "--label",
        "STATE",
        "--uuid",
        "0" * 8 + "-0000-0000-0000-" + "0" * 12,
    )
    assert r.code == 1
    assert "nil UUID" in r.err
    assert r.out == ""
