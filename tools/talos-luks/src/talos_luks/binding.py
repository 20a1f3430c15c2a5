"""The thin layer over the compiled cffi module: one return-code check, handle lifetime, logs.

``check(rc, what)`` is the only place a libcryptsetup return code becomes an exception: negative
errno values map onto cryptsetup's exit table (``errors``). libcryptsetup's log messages go to
the ``talos_luks.libcryptsetup`` logger; the last error-level message is appended to the
exception text (libcryptsetup never logs key material; tests/luks checks that).
"""

from __future__ import annotations

import errno as _errno
import logging
from contextlib import contextmanager

from talos_luks._libcryptsetup import ffi, lib  # compiled by cffi; untyped
from talos_luks.errors import (
    BadPassphraseError,
    DeviceBusyError,
    LuksError,
    LuksOutOfMemoryError,
    WrongDeviceError,
)

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs start-up time
    from collections.abc import Iterator
    from typing import Any

__all__ = [
    "check",
    "ffi",
    "lib",
    "log",
    "mapping_status_code",
    "open_by_name",
    "open_device",
    "set_debug",
]

log = logging.getLogger("talos_luks.libcryptsetup")

_LEVELS = {
    lib.CRYPT_LOG_ERROR: logging.INFO,  # our exception carries it to the user; see _last_error
    lib.CRYPT_LOG_NORMAL: logging.INFO,
    lib.CRYPT_LOG_VERBOSE: logging.DEBUG,
    lib.CRYPT_LOG_DEBUG: logging.DEBUG,
}


class _LastError:
    """The most recent error-level library message (the CLI is single-threaded)."""

    text: str | None = None


@ffi.def_extern()  # type: ignore[untyped-decorator]
def _talos_luks_log(level: int, msg: Any, _usrptr: Any) -> None:
    text = ffi.string(msg).decode("utf-8", "replace").rstrip("\n") if msg != ffi.NULL else ""
    if level == lib.CRYPT_LOG_ERROR:
        _LastError.text = text
    log.log(_LEVELS.get(level, logging.DEBUG), "%s", text)


lib.crypt_set_log_callback(ffi.NULL, lib._talos_luks_log, ffi.NULL)


def set_debug(enabled: bool) -> None:
    """Turn libcryptsetup's own debug messages on or off (they go to the logger at DEBUG)."""
    lib.crypt_set_debug_level(lib.CRYPT_DEBUG_ALL if enabled else lib.CRYPT_DEBUG_NONE)


_BY_ERRNO: dict[int, type[LuksError]] = {
    _errno.EPERM: BadPassphraseError,
    _errno.ENOMEM: LuksOutOfMemoryError,
    _errno.ENODEV: WrongDeviceError,
    _errno.ENOTBLK: WrongDeviceError,
    _errno.EBUSY: DeviceBusyError,
    _errno.EEXIST: DeviceBusyError,
}


def check(rc: int, what: str) -> int:
    """Return ``rc`` when it is not negative; otherwise raise the exception its errno maps to.

    ``what`` names the operation and the device or slot, never key material.
    """
    if rc >= 0:
        _LastError.text = None
        return rc
    code = -rc
    detail = _LastError.text
    _LastError.text = None
    cls = _BY_ERRNO.get(code, LuksError)
    if cls is BadPassphraseError:
        message = f"{what}: no key slot opens with this key"
    elif cls is LuksOutOfMemoryError:
        message = f"{what}: out of memory (is the PBKDF memory cost larger than this machine has?)"
    elif code == _errno.ENOENT:
        message = f"{what}: no usable key slot"
    else:
        reason = detail or _errno.errorcode.get(code, f"error {code}")
        message = f"{what}: {reason}"
    raise cls(message, errno=code)


def clear_last_error() -> None:
    _LastError.text = None


def mapping_status_code(name: str) -> int:
    """``crypt_status(NULL, name)``: CRYPT_INVALID when device-mapper is unavailable, else the
    mapping's state. The error it logs does not replace the one a failed call left behind."""
    saved = _LastError.text
    try:
        return int(lib.crypt_status(ffi.NULL, name.encode()))
    finally:
        _LastError.text = saved


@contextmanager
def open_device(path: str) -> Iterator[Any]:
    """A ``struct crypt_device *`` for ``path``, freed on exit (``crypt_init``/``crypt_free``)."""
    pp = ffi.new("struct crypt_device **")
    clear_last_error()
    check(lib.crypt_init(pp, path.encode()), f"cannot open {path}")
    try:
        yield pp[0]
    finally:
        lib.crypt_free(pp[0])


@contextmanager
def open_by_name(name: str) -> Iterator[Any]:
    """A handle on the active mapping ``name`` (``crypt_init_by_name``), freed on exit."""
    pp = ffi.new("struct crypt_device **")
    clear_last_error()
    check(lib.crypt_init_by_name(pp, name.encode()), f"no active mapping named {name}")
    try:
        yield pp[0]
    finally:
        lib.crypt_free(pp[0])
