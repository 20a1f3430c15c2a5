"""Guest side of vmlib: helpers for the program that runs as PID 1 inside the VM.

``main(fn)`` runs ``fn()``, prints any traceback to the console and reports ``fn``'s return
value (or 1) as the guest's exit status; PID 1 must never just return, so this never does.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

DEBUG_EXIT_PORT = 0xF4


def exit(status: int) -> NoReturn:  # noqa: A001 - the guest's exit, by design named like it
    """Report ``status`` through the isa-debug-exit port; QEMU exits immediately."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError):
            stream.flush()
    os.sync()
    fd = os.open("/dev/port", os.O_WRONLY)
    os.lseek(fd, DEBUG_EXIT_PORT, os.SEEK_SET)
    os.write(fd, bytes([status & 0xFF]))
    while True:  # not reached: QEMU has exited
        time.sleep(1)


def main(fn: Callable[[], int]) -> NoReturn:
    try:
        status = fn()
    except BaseException:  # noqa: BLE001 - PID 1 reports every failure as a status
        traceback.print_exc()
        status = 1
    exit(status)


def modprobe(*names: str) -> None:
    subprocess.run(["modprobe", "-a", *names], check=True)


def disk(serial: str, timeout: float = 30) -> str:
    """``/dev/vdX`` of the virtio disk with this serial (no udev here: read sysfs)."""
    deadline = time.monotonic() + timeout
    while True:
        for block in sorted(Path("/sys/block").glob("vd*")):
            s = block / "serial"
            if s.exists() and s.read_text().strip() == serial:
                dev = Path("/dev") / block.name
                if dev.exists():
                    return str(dev)
        if time.monotonic() > deadline:
            raise FileNotFoundError(f"no virtio disk with serial {serial}")
        time.sleep(0.05)
