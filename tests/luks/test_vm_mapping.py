"""Mapping round trips in a QEMU guest with Debian's kernel (device-mapper, dm-crypt).

One boot runs every check (vm_guest.py as PID 1): a talos-luks volume with xfs, reopened by
talos-luks and by ``cryptsetup open``; a ``cryptsetup luksFormat`` volume with ext4 opened by
talos-luks; ``apply`` with a nodeID key from the guest's SMBIOS UUID and the config on stdin;
an adiantum volume. The host then checks that no plaintext reached any raw image.
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import vmlib

from luks.conftest import FAST

pytestmark = [pytest.mark.vm, pytest.mark.slow]

UUID = "3f6d2a1c-8b4e-4d7a-9c15-72e0b8a4f396"
GUEST = Path(__file__).with_name("vm_guest.py")


def sparse(path: Path, size: int) -> Path:
    with path.open("wb") as fh:
        fh.truncate(size)
    return path


def contains(path: Path, needle: bytes) -> bool:
    overlap = len(needle) - 1
    tail = b""
    with path.open("rb") as fh:
        while chunk := fh.read(8 << 20):
            if needle in tail + chunk:
                return True
            tail = chunk[-overlap:]
    return False


@pytest.fixture(scope="module")
def vm_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    reason = vmlib.missing()
    if reason is not None:
        pytest.skip(f"cannot boot a VM: {reason}")
    share = tmp_path_factory.mktemp("share")
    work = tmp_path_factory.mktemp("disks")
    marker = b"TALOS-LUKS-PLAINTEXT-" + secrets.token_hex(8).encode()
    (share / "key").write_bytes(b"vm test passphrase")
    (share / "wrong").write_bytes(b"not the passphrase")
    (share / "job.json").write_text(json.dumps({"fast": FAST, "marker": marker.hex()}))
    (share / "machine.yaml").write_text(
        "version: v1alpha1\nmachine:\n    type: join\n    systemDiskEncryption:\n"
        "        ephemeral:\n            provider: luks2\n            keys: [{nodeID: {}, slot: 0}]\n"
        "cluster: {}\n"
    )
    disks = {
        "ours": sparse(work / "ours.img", 512 << 20),  # mkfs.xfs wants 300 MB or more
        "theirs": sparse(work / "theirs.img", 64 << 20),
        "apply": sparse(work / "apply.img", 64 << 20),
        "adiantum": sparse(work / "adiantum.img", 32 << 20),
    }
    made = subprocess.run(
        [
            "cryptsetup",
            "--batch-mode",
            "luksFormat",
            "--type",
            "luks2",
            "--key-file",
            str(share / "key"),
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            str(disks["theirs"]),
        ],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    # a bound below pytest's own timeout, so that a stuck guest still shows its console
    g = vmlib.boot(
        [sys.executable, str(GUEST)], disks=disks, share=share, smbios_uuid=UUID, timeout=240
    )
    print(f"guest ran {g.seconds:.1f} s")
    print("\n".join(line for line in g.console.splitlines() if line.startswith("vm_guest:")))
    result_file = share / "result.json"
    assert g.ok, f"guest status {g.status}\n{g.console[-6000:]}"
    return {
        "result": json.loads(result_file.read_text()),
        "disks": disks,
        "marker": marker,
        "console": g.console,
        "share": share,
    }


def test_talos_luks_volume_round_trip_xfs(vm_run: dict) -> None:
    r = vm_run["result"]
    assert r["ours_path"] == "/dev/mapper/ours"
    assert "state: active" in r["ours_status"] or "state: in use" in r["ours_status"]
    assert "cipher: aes-xts-plain64" in r["ours_status"]
    assert r["ours_closed"] is True
    # a name that is not mapped: exit 4 from both tools, status and close alike
    assert r["inactive_exits"] == {
        "status": 4,
        "close": 4,
        "cryptsetup status": 4,
        "cryptsetup close": 4,
    }
    assert r["ours_readback"] is True
    assert r["busy_exit"] == 5  # the mapping exists already
    assert r["ours_wrong_key_exit"] == 2


def test_our_volume_opens_with_cryptsetup_open(vm_run: dict) -> None:
    assert vm_run["result"]["ours_cryptsetup_readback"] is True


def test_cryptsetup_volume_round_trip_ext4(vm_run: dict) -> None:
    assert vm_run["result"]["theirs_readback"] is True


def test_apply_with_nodeid_from_smbios(vm_run: dict) -> None:
    r = vm_run["result"]
    assert r["apply_path"] == "/dev/mapper/vdc-encrypted"  # <partition device>-encrypted
    assert r["apply_again_path"] == r["apply_path"]
    image = vm_run["disks"]["apply"]
    from talos_luks.volume import Volume

    with Volume.load(str(image)) as vol:  # the guest's key is UUID + label, as Talos derives it
        assert vol.try_key((UUID + "EPHEMERAL").encode(), 0) == 0
        assert vol.try_key((UUID + "STATE").encode()) is None


def test_adiantum_volume(vm_run: dict) -> None:
    r = vm_run["result"]
    assert r["adiantum_readback"] is True
    assert "cipher: xchacha12,aes-adiantum-plain64" in r["adiantum_dump"]
    assert "\nkeySize: 256\n" in r["adiantum_dump"]  # adiantum's default key size


def test_no_plaintext_on_any_raw_disk(vm_run: dict, tmp_path: Path) -> None:
    marker = vm_run["marker"]
    control = tmp_path / "control.img"  # negative control: the scan does find the marker
    control.write_bytes(os.urandom(5000) + marker + os.urandom(5000))
    assert contains(control, marker)
    for name, image in vm_run["disks"].items():
        assert not contains(image, marker), f"plaintext found on the raw {name} image"
