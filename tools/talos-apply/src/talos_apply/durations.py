"""Go-style durations on the command line: ``30s``, ``1m``, ``1h30m``."""

from __future__ import annotations

import datetime as dt
import re

from libtalos.errors import UsageError

_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s)")
_UNIT = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}


def parse_duration(text: str, option: str) -> dt.timedelta:
    pos, seconds = 0, 0.0
    for m in _PART.finditer(text):
        if m.start() != pos:
            break
        seconds += float(m.group(1)) * _UNIT[m.group(2)]
        pos = m.end()
    if not text or pos != len(text):
        raise UsageError(f"{option}: {text!r} is not a duration (e.g. 30s, 1m, 1h30m)")
    if seconds <= 0:
        raise UsageError(f"{option}: the duration must be positive")
    return dt.timedelta(seconds=seconds)
