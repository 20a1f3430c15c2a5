"""The binding layer: the compiled module loads, return codes map onto cryptsetup's table,
libcryptsetup's log reaches our logger."""

from __future__ import annotations

import errno
import logging
from pathlib import Path

import pytest

from talos_luks import binding
from talos_luks.errors import (
    BadPassphraseError,
    DeviceBusyError,
    LuksError,
    LuksExit,
    LuksOutOfMemoryError,
    WrongDeviceError,
)


def test_compiled_module_loads_and_answers() -> None:
    assert binding.lib.crypt_keyslot_max(b"LUKS2") == 32
    assert binding.lib.crypt_keyslot_max(b"LUKS1") == 8


@pytest.mark.parametrize(
    ("err", "cls", "code"),
    [
        (errno.EPERM, BadPassphraseError, LuksExit.BAD_PASSPHRASE),
        (errno.ENOMEM, LuksOutOfMemoryError, LuksExit.OUT_OF_MEMORY),
        (errno.ENODEV, WrongDeviceError, LuksExit.WRONG_DEVICE),
        (errno.ENOTBLK, WrongDeviceError, LuksExit.WRONG_DEVICE),
        (errno.EBUSY, DeviceBusyError, LuksExit.BUSY),
        (errno.EEXIST, DeviceBusyError, LuksExit.BUSY),
        (errno.EINVAL, LuksError, LuksExit.FAILURE),
        (errno.EIO, LuksError, LuksExit.FAILURE),
    ],
)
def test_check_maps_errno_to_cryptsetups_table(err: int, cls: type, code: int) -> None:
    with pytest.raises(cls) as info:
        binding.check(-err, "op")
    assert type(info.value) is cls
    assert int(info.value.exit_code) == code
    assert info.value.errno == err


def test_check_passes_non_negative_values_through() -> None:
    assert binding.check(0, "op") == 0
    assert binding.check(7, "op") == 7


def test_library_log_reaches_our_logger(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    not_luks = tmp_path / "zeros"
    not_luks.write_bytes(b"\0" * (1 << 20))
    caplog.set_level(logging.DEBUG, logger="talos_luks.libcryptsetup")
    binding.set_debug(True)
    try:
        with binding.open_device(str(not_luks)) as cd:
            rc = binding.lib.crypt_load(cd, b"LUKS2", binding.ffi.NULL)
    finally:
        binding.set_debug(False)
    assert rc < 0
    messages = [r.getMessage() for r in caplog.records if r.name == "talos_luks.libcryptsetup"]
    assert any(str(not_luks) in m for m in messages), messages
