"""What Talos does with an encrypted partition at mount time, as one call.

1. An empty device (first MiB all zeros) is formatted with the first key by slot order; a device
   that holds data but no LUKS2 header is refused and left untouched (exit 4).
2. The volume is opened with the first configured key that works (exit 2 when none does).
3. Key slots are brought in line with the config: a missing slot is added, a slot whose key
   fails is replaced, a slot the config does not name is removed -- but the slot the volume was
   opened with is replaced only after another configured slot has been verified to open it, and
   no slot is removed unless a configured slot verifiably opens the volume. So the last key that
   opens the volume is never lost, whatever order the config lists keys in.
4. The volume is mapped as ``<device name>-encrypted`` and ``/dev/mapper/<name>`` returned
   (an existing mapping of the same device is reused).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field

from talos_luks import nodeid
from talos_luks.config import EncryptionSpec
from talos_luks.errors import (
    BadPassphraseError,
    DeviceBusyError,
    LuksError,
    NotLuksError,
    WrongDeviceError,
)
from talos_luks.volume import (
    FormatOptions,
    Pbkdf,
    Volume,
    check_block_or_file,
    is_empty,
    mapping_status,
)

log = logging.getLogger("talos_luks")


@dataclass
class ApplyResult:
    path: str | None = None
    formatted: bool = False
    opened_slot: int = -1
    added: list[int] = field(default_factory=list)
    replaced: list[int] = field(default_factory=list)
    removed: list[int] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)  # failing slots kept as the last working key


def mapped_name(device: str) -> str:
    """Talos's mapping name: the partition's device name plus ``-encrypted`` (sda6-encrypted)."""
    return f"{os.path.basename(os.path.normpath(device))}-encrypted"


def resolve_keys(
    spec: EncryptionSpec, partition: str, system_uuid: str | None
) -> list[tuple[int, bytes]]:
    """(slot, passphrase) for each configured key, in slot order."""
    out: list[tuple[int, bytes]] = []
    for key in spec.keys:
        if key.kind == "nodeID":
            out.append((key.slot, nodeid.derive(partition, system_uuid)))
        else:
            out.append((key.slot, key.passphrase or b""))
    return out


def apply(
    device: str,
    spec: EncryptionSpec,
    *,
    partition: str,
    system_uuid: str | None = None,
    name: str | None = None,
    pbkdf: Pbkdf | None = None,
    activate: bool = True,
) -> ApplyResult:
    pbkdf = pbkdf or Pbkdf()
    keys = resolve_keys(spec, partition, system_uuid)
    result = ApplyResult()
    check_block_or_file(device)
    if is_empty(device):
        first_slot, first_key = keys[0]
        opts = FormatOptions(
            cipher=spec.cipher, key_size=spec.key_size, sector_size=spec.block_size, pbkdf=pbkdf
        )
        with Volume.handle(device) as vol:
            vol.format(first_key, first_slot, opts)
        log.info("%s: formatted LUKS2 (%s), key slot %d", device, spec.cipher, first_slot)
        result.formatted = True
    else:
        try:
            with Volume.load(device):
                pass
        except NotLuksError:
            raise WrongDeviceError(
                f"{device}: not empty and not a LUKS2 volume; refusing to format it",
                hint="wipe the partition first if its data is not needed",
            ) from None

    with Volume.load(device) as vol:
        vol.set_pbkdf(pbkdf)
        # just formatted: the first key is in its slot; otherwise the first key that opens
        working: tuple[int, bytes] | None = keys[0] if result.formatted else None
        for _slot, key in keys if working is None else ():
            opened = vol.try_key(key)
            if opened is not None:
                working = (opened, key)
                break
        if working is None:
            raise BadPassphraseError(f"{device}: none of the configured keys opens the volume")
        opened_slot, working_key = working
        result.opened_slot = opened_slot
        good = _sync(vol, keys, opened_slot, working_key, result)

    if not activate:
        return result
    target = name or mapped_name(device)
    existing = _existing_mapping(target)
    if existing is not None:
        if os.path.realpath(existing) != os.path.realpath(device):
            raise DeviceBusyError(f"{target}: already maps another device ({existing})")
        log.info("%s: already open as %s", device, target)
    else:
        flags = _activation_flags(spec.options)
        # a slot verified just now, named, so that libcryptsetup runs one key derivation only
        slot, key = next(iter(good.items()), (-1, working_key))
        with Volume.load(device) as vol:
            vol.activate(target, key, slot, flags)
    result.path = f"/dev/mapper/{target}"
    return result


def _sync(
    vol: Volume,
    keys: list[tuple[int, bytes]],
    opened_slot: int,
    working_key: bytes,
    result: ApplyResult,
) -> dict[int, bytes]:
    """Bring the slots in line with ``keys``; the configured slots verified to open, by slot.

    Each key derivation costs up to the PBKDF's unlock time (seconds with argon2), so a slot is
    tested once: before writing when it is already there, after writing when it was written.
    """
    configured = dict(keys)
    good: dict[int, bytes] = {}  # configured slots verified to open with their configured key
    # The slot we opened with goes last, so that it is replaced only once another slot works.
    order = sorted(keys, key=lambda sk: (sk[0] == opened_slot, sk[0]))
    for slot, key in order:
        if not vol.slot_active(slot):
            vol.add_key(working_key, key, slot)
            result.added.append(slot)
            log.info("%s: added key slot %d", vol.path, slot)
        elif (slot == opened_slot and key == working_key) or vol.try_key(key, slot) is not None:
            good[slot] = key  # (the working key opened this very slot: known good already)
            continue
        else:
            if slot == opened_slot:
                others = {s: k for s, k in good.items() if s != slot}
                if not others:
                    log.warning(
                        "%s: key slot %d does not match the config but is the only working key;"
                        " keeping it",
                        vol.path,
                        slot,
                    )
                    result.kept.append(slot)
                    continue
                working_key = next(iter(others.values()))
            vol.destroy_slot(slot)
            vol.add_key(working_key, key, slot)
            result.replaced.append(slot)
            log.info("%s: replaced key slot %d", vol.path, slot)
        if vol.try_key(key, slot) is None:  # pragma: no cover - libcryptsetup broke its promise
            raise LuksError(f"{vol.path}: key slot {slot} does not open after writing it")
        good[slot] = key
    if not good:
        return good  # nothing verified: remove nothing
    for slot in vol.active_slots():
        if slot not in configured:
            vol.destroy_slot(slot)
            result.removed.append(slot)
            log.info("%s: removed key slot %d (not in the config)", vol.path, slot)
    return good


def _existing_mapping(name: str) -> str | None:
    if not os.path.exists(f"/dev/mapper/{name}"):
        return None
    try:
        device = mapping_status(name).get("device")
    except LuksError:
        return None
    return str(device) if device else None


def _activation_flags(options: tuple[str, ...]) -> int:
    from talos_luks.binding import lib

    table = {
        "no_read_workqueue": lib.CRYPT_ACTIVATE_NO_READ_WORKQUEUE,
        "no_write_workqueue": lib.CRYPT_ACTIVATE_NO_WRITE_WORKQUEUE,
        "same_cpu_crypt": lib.CRYPT_ACTIVATE_SAME_CPU_CRYPT,
    }
    flags = 0
    for opt in options:
        flags |= table[opt]
    return int(flags)
