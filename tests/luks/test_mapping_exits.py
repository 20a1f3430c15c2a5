"""open, close and status on a kernel without device-mapper: the same exit codes as the cryptsetup
CLI in the same situation (open 1, close 4, status 1), each measured against cryptsetup here, and
a message that names the missing piece. With device-mapper present these cases are the VM's
(tests/luks/test_vm_mapping.py: an inactive name exits 4 from status and close)."""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from .conftest import FAST, Result


def _device_mapper_missing() -> str | None:
    """None when this kernel has no usable device-mapper (what these tests are about)."""
    from talos_luks.binding import lib, mapping_status_code

    if mapping_status_code("talos-luks-probe") != lib.CRYPT_INVALID:
        return "device-mapper works here: the no-device-mapper exit codes cannot be observed"
    return None


@pytest.fixture
def no_dm() -> str:
    reason = _device_mapper_missing()
    if reason:
        pytest.skip(reason)
    cs = shutil.which("cryptsetup") or "/usr/sbin/cryptsetup"
    if not Path(cs).exists():
        pytest.skip("the cryptsetup CLI is missing (Debian cryptsetup-bin)")
    return cs


def _cryptsetup(cs: str, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([cs, *argv], capture_output=True, text=True, check=False, timeout=60)


def test_exit_codes_match_cryptsetup_without_device_mapper(
    no_dm: str, run: Callable[..., Result], image: Path, key: Callable[[bytes], str]
) -> None:
    good, wrong = key(b"the right key"), key(b"a wrong key")
    assert run("format", str(image), "--key-file", good, *FAST).code == 0

    cases = {
        "open, right key": (
            ("open", str(image), "m1", "--key-file", good),
            ("open", "--key-file", good, str(image), "m1"),
        ),
        "open, wrong key": (
            ("open", str(image), "m1", "--key-file", wrong),
            ("open", "--key-file", wrong, str(image), "m1"),
        ),
        "close": (("close", "m1"), ("close", "m1")),
        "status": (("status", "m1"), ("status", "m1")),
    }
    ours, theirs = {}, {}
    for what, (our_argv, their_argv) in cases.items():
        res = run(*our_argv)
        ours[what] = res.code
        theirs[what] = _cryptsetup(no_dm, *their_argv).returncode
        assert "device-mapper is not available" in res.err, (what, res.err)
        assert "dm_crypt" in res.err  # the hint names the kernel module
        assert res.out == ""
    assert ours == theirs
    # the table as measured with cryptsetup 2.6 (Debian 12); a change there shows up above first
    assert ours == {"open, right key": 1, "open, wrong key": 1, "close": 4, "status": 1}


def test_header_work_still_runs_without_device_mapper(
    no_dm: str, run: Callable[..., Result], image: Path, key: Callable[[bytes], str]
) -> None:
    """Negative control for the message above: only mapping commands mention device-mapper."""
    good, wrong = key(b"the right key"), key(b"a wrong key")
    assert run("format", str(image), "--key-file", good, *FAST).code == 0
    ok = run("test-key", str(image), "--key-file", good)
    bad = run("test-key", str(image), "--key-file", wrong)
    assert (ok.code, bad.code) == (0, 2)
    assert "device-mapper" not in ok.err + bad.err
    theirs = _cryptsetup(no_dm, "open", "--test-passphrase", "--key-file", wrong, str(image))
    assert theirs.returncode == bad.code
