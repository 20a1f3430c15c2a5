"""Talos v0.9's ``nodeID`` key: the SMBIOS system UUID string followed by the partition label.

There is no hashing and no salt: the passphrase is ``<uuid><LABEL>`` (41 bytes for STATE, 45 for
EPHEMERAL); LUKS's PBKDF does the stretching. The UUID is the canonical lowercase 8-4-4-4-12
form of SMBIOS's system UUID with its first three fields byte-swapped (SMBIOS 2.6+), which is
what Linux prints in ``/sys/class/dmi/id/product_uuid``. Talos refuses a UUID in which any one
character fills more than half of the string (its "primitive entropy check"), which also covers
the nil UUID; we refuse the nil and the all-ones UUID by name as well.
"""

from __future__ import annotations

import re
import uuid
from collections import Counter
from pathlib import Path

from talos_luks.errors import LuksError

LABELS = ("STATE", "EPHEMERAL")
PRODUCT_UUID = Path("/sys/class/dmi/id/product_uuid")
_CANONICAL = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def normalise_uuid(text: str, source: str = "--uuid") -> str:
    """The canonical lowercase form of ``text``; a clear error naming ``source`` otherwise."""
    value = text.strip().lower()
    if not _CANONICAL.match(value):
        try:
            value = str(uuid.UUID(value))
        except ValueError:
            raise LuksError(f"{source}: not a UUID (expected 8-4-4-4-12 hex digits)") from None
    if value == str(uuid.UUID(int=0)):
        raise LuksError(f"{source}: the nil UUID cannot key a disk (the firmware set no UUID)")
    if value == "ffffffff-ffff-ffff-ffff-ffffffffffff":
        raise LuksError(f"{source}: the all-ones UUID cannot key a disk (the firmware set no UUID)")
    char, count = Counter(value).most_common(1)[0]
    if count > len(value) // 2:
        raise LuksError(
            f"{source}: UUID has too little entropy"
            f" ({count} of {len(value)} characters are {char!r})"
        )
    return value


def read_system_uuid(path: Path = PRODUCT_UUID) -> str:
    """The SMBIOS system UUID as Linux reports it (root only on most kernels)."""
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise LuksError(
            f"{path}: no SMBIOS system UUID on this machine", hint="pass --uuid"
        ) from None
    except OSError as exc:
        raise LuksError(f"{path}: cannot read: {exc.strerror}", hint="pass --uuid") from None
    return normalise_uuid(text, str(path))


def derive(label: str, system_uuid: str | None = None) -> bytes:
    """The nodeID passphrase for partition ``label`` (STATE or EPHEMERAL)."""
    if label not in LABELS:
        raise LuksError(f"--label: must be one of {', '.join(LABELS)}, not {label!r}")
    value = normalise_uuid(system_uuid) if system_uuid is not None else read_system_uuid()
    return (value + label).encode("ascii")
