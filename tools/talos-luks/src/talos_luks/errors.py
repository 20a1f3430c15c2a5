"""talos-luks's exceptions and exit codes: cryptsetup's own table, so its scripts keep working.

| code | meaning (cryptsetup's wording) | raised as |
| --- | --- | --- |
| 0 | success | |
| 1 | wrong parameters (usage errors too), no LUKS2 header, other failures | ``LuksError`` |
| 2 | no permission (bad passphrase) | ``BadPassphraseError`` |
| 3 | out of memory | ``LuksOutOfMemoryError`` |
| 4 | wrong device specified | ``WrongDeviceError`` |
| 5 | device already exists or device is busy | ``DeviceBusyError`` |
"""

from __future__ import annotations

import enum

from libtalos.errors import TalosError


class LuksExit(enum.IntEnum):
    """cryptsetup's exit codes (src/utils_tools.c ``translate_errno``)."""

    OK = 0
    FAILURE = 1
    BAD_PASSPHRASE = 2
    OUT_OF_MEMORY = 3
    WRONG_DEVICE = 4
    BUSY = 5


# libtalos types ``exit_code`` as its own ExitCode; ours is an IntEnum of cryptsetup's table and
# libtalos.cli.handle() only needs an int, hence the one assignment ignore below.


class LuksError(TalosError):
    """A LUKS operation failed (exit 1); ``errno`` is libcryptsetup's, when it came from there."""

    exit_code = LuksExit.FAILURE  # type: ignore[assignment]

    def __init__(self, message: str, *, hint: str | None = None, errno: int | None = None) -> None:
        super().__init__(message, hint=hint)
        self.errno = errno


class NotLuksError(LuksError):
    """The device holds no valid LUKS2 header (exit 1, as ``cryptsetup luksDump`` does)."""


class BadPassphraseError(LuksError):
    """No key slot opens with the key given (exit 2)."""

    exit_code = LuksExit.BAD_PASSPHRASE


class LuksOutOfMemoryError(LuksError):
    """libcryptsetup ran out of memory, typically in the argon2 key derivation (exit 3)."""

    exit_code = LuksExit.OUT_OF_MEMORY


class WrongDeviceError(LuksError):
    """The device is missing, is not a block device or file, or is not empty (exit 4)."""

    exit_code = LuksExit.WRONG_DEVICE


class DeviceBusyError(LuksError):
    """The mapping exists already, the device is in use, or the key slot is taken (exit 5)."""

    exit_code = LuksExit.BUSY
