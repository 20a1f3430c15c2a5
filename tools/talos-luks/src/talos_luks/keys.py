"""Where keys come from: a file (``-`` = stdin), an inherited file descriptor. Never argv.

Bytes are taken as they are, with no newline trimming, like ``cryptsetup --key-file``.
"""

from __future__ import annotations

import os
import sys

from talos_luks.errors import LuksError

MAX_KEY = 8 << 20  # cryptsetup's default --keyfile-size limit (8 MiB)


def _read_fd(fd: int, what: str) -> bytes:
    chunks: list[bytes] = []
    total = 0
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError as exc:
            raise LuksError(f"{what}: cannot read: {exc.strerror}") from None
        if not chunk:
            break
        total += len(chunk)
        if total > MAX_KEY:
            raise LuksError(f"{what}: key is larger than {MAX_KEY} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


def read_key(key_file: str | None, key_fd: int | None, *, option: str = "--key-file") -> bytes:
    """The key named by ``--key-file`` or ``--key-fd`` (exactly one of them)."""
    fd_option = option.replace("-file", "-fd")
    if key_file is not None and key_fd is not None:
        raise LuksError(f"{option} and {fd_option} cannot be used together")
    if key_file is None and key_fd is None:
        raise LuksError(f"no key given: pass {option} FILE ('-' for stdin) or {fd_option} N")
    if key_fd is not None:
        if key_fd < 0:
            raise LuksError(f"{fd_option}: {key_fd} is not a file descriptor")
        key = _read_fd(key_fd, f"{fd_option} {key_fd}")
        what = f"{fd_option} {key_fd}"
    elif key_file == "-":
        key = _read_fd(sys.stdin.fileno(), f"{option} - (stdin)")
        what = f"{option} - (stdin)"
    elif key_file is not None:
        try:
            fd = os.open(key_file, os.O_RDONLY | os.O_CLOEXEC)
        except OSError as exc:
            raise LuksError(f"{option} {key_file}: cannot open: {exc.strerror}") from None
        try:
            key = _read_fd(fd, f"{option} {key_file}")
        finally:
            os.close(fd)
        what = f"{option} {key_file}"
    else:  # unreachable: one of the two was checked above
        raise LuksError(f"no key given: pass {option} FILE")
    if not key:
        raise LuksError(f"{what}: the key is empty")
    return key
