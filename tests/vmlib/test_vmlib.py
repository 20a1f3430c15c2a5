"""vmlib itself: one boot proves the program is PID 1, sees the disks and the SMBIOS UUID asked
for, writes to the share, and that its exit status reaches the host (7, not just 0)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import vmlib

pytestmark = [pytest.mark.vm, pytest.mark.slow]

PROGRAM = """\
import os, sys
sys.path.insert(0, {tests!r})
from vmlib import guest
def run():
    guest.modprobe("virtio_blk")
    lines = [
        f"pid={{os.getpid()}}",
        f"uuid={{open('/sys/class/dmi/id/product_uuid').read().strip()}}",
        f"disk={{guest.disk('probe')}}",
    ]
    open("/run/vmlib/out.txt", "w").write("\\n".join(lines) + "\\n")
    return 7
guest.main(run)
"""


def test_boot_reports_status_pid_disk_and_uuid(tmp_path: Path) -> None:
    reason = vmlib.missing()
    if reason is not None:
        pytest.skip(f"cannot boot a VM: {reason}")
    share = tmp_path / "share"
    share.mkdir()
    (share / "prog.py").write_text(PROGRAM.format(tests=str(Path(__file__).resolve().parents[1])))
    disk = tmp_path / "probe.img"
    with disk.open("wb") as fh:
        fh.truncate(1 << 20)
    uuid = "0b9e4c1a-7d3f-4a62-b8e5-91c2d7f0a3b4"
    g = vmlib.boot(
        [sys.executable, f"{vmlib.GUEST_SHARE}/prog.py"],
        disks={"probe": disk},
        share=share,
        smbios_uuid=uuid,
        timeout=300,
    )
    assert g.status == 7, g.console[-4000:]
    assert not g.ok
    assert (share / "out.txt").read_text().splitlines() == [
        "pid=1",
        f"uuid={uuid}",
        "disk=/dev/vda",
    ]


def test_argv_with_spaces_is_refused() -> None:
    if vmlib.missing() is not None:
        pytest.skip(f"cannot boot a VM: {vmlib.missing()}")
    with pytest.raises(ValueError, match="without spaces"):
        vmlib.boot(["/bin/echo", "two words"])
