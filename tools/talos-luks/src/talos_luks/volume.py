"""The Pythonic API over libcryptsetup: format, keys, test, activate, status, header dump.

Keys are ``bytes`` passed to libcryptsetup as (pointer, length); they are never formatted into a
message. Every call goes through :func:`talos_luks.binding.check`.
"""

from __future__ import annotations

import os
import stat
from contextlib import contextmanager
from dataclasses import dataclass

from talos_luks.errors import LuksError, NotLuksError, WrongDeviceError

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing and json cost start-up time; json is imported where it is used
    from collections.abc import Iterator
    from typing import Any

LUKS2 = "LUKS2"
CIPHERS = ("aes-xts-plain64", "xchacha12,aes-adiantum-plain64", "xchacha20,aes-adiantum-plain64")
PBKDFS = ("argon2id", "argon2i", "pbkdf2")
SECTOR_SIZES = (512, 1024, 2048, 4096)
MAX_SLOTS = 32
HEADER_PROBE = 1 << 20  # bytes read to decide whether a device is empty
HEADER_BACKUP = 16 << 20  # the default LUKS2 header + key-slot area, restored if format fails


@dataclass(frozen=True)
class Pbkdf:
    """Key-derivation parameters for new key slots.

    ``iterations`` > 0 skips libcryptsetup's benchmark (fixed cost; tests and benchmarks use it);
    otherwise ``time_ms`` is the target unlock time on this machine. The default is argon2id
    capped at 256 MiB and 4 threads, so that a 1-2 GiB node can open what a larger machine formats
    (cryptsetup's own default is 1 GiB, capped at half the formatting machine's RAM).
    """

    type: str = "argon2id"
    hash: str = "sha256"
    time_ms: int = 2000
    iterations: int = 0
    memory_kb: int = 262144
    parallel: int = 4

    def to_c(self, keep: list[Any]) -> Any:
        from talos_luks.binding import ffi, lib

        if self.type not in PBKDFS:
            raise LuksError(f"--pbkdf: unknown PBKDF {self.type!r} (one of {', '.join(PBKDFS)})")
        p = ffi.new("struct crypt_pbkdf_type *")
        t, h = ffi.new("char[]", self.type.encode()), ffi.new("char[]", self.hash.encode())
        keep.extend([p, t, h])
        p.type, p.hash = t, h
        p.time_ms = self.time_ms
        p.iterations = self.iterations
        argon = self.type.startswith("argon2")
        p.max_memory_kb = self.memory_kb if argon else 0
        p.parallel_threads = self.parallel if argon else 0
        p.flags = lib.CRYPT_PBKDF_NO_BENCHMARK if self.iterations > 0 else 0
        return p


def default_key_size(cipher: str) -> int:
    """512 bits for AES-XTS (two AES-256 keys, cryptsetup's default); 256 for adiantum."""
    return 256 if "adiantum" in cipher else 512


@dataclass(frozen=True)
class FormatOptions:
    cipher: str = "aes-xts-plain64"
    key_size: int = 0  # bits; 0: the cipher's default (default_key_size)
    sector_size: int = 512
    pbkdf: Pbkdf = Pbkdf()
    label: str | None = None


def check_block_or_file(path: str) -> None:
    """Refuse a missing path or one that is neither a block device nor a regular file (exit 4)."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise WrongDeviceError(f"{path}: no such device") from None
    except OSError as exc:
        raise WrongDeviceError(f"{path}: cannot stat: {exc.strerror}") from None
    if not (stat.S_ISBLK(st.st_mode) or stat.S_ISREG(st.st_mode)):
        raise WrongDeviceError(f"{path}: not a block device or a regular file")


def is_empty(path: str) -> bool:
    """True when the first MiB of ``path`` is all zero bytes (no filesystem, no LUKS, no table).

    Every signature Talos cares about (LUKS, xfs, ext4, GPT, swap) lives in that first MiB.
    """
    try:
        with open(path, "rb") as fh:
            head = fh.read(HEADER_PROBE)
    except OSError as exc:
        raise WrongDeviceError(f"{path}: cannot read: {exc.strerror}") from None
    return not head.strip(b"\0")


class Volume:
    """A LUKS2 header on a device or image file, open for the lifetime of a ``with`` block."""

    def __init__(self, path: str, cd: Any) -> None:
        self.path = path
        self._cd = cd

    # -- opening -------------------------------------------------------------------------
    @classmethod
    @contextmanager
    def handle(cls, path: str) -> Iterator[Volume]:
        """A handle on ``path`` without loading a header (for :meth:`format`)."""
        from talos_luks.binding import open_device

        check_block_or_file(path)
        with open_device(path) as cd:
            yield cls(path, cd)

    @classmethod
    @contextmanager
    def load(cls, path: str) -> Iterator[Volume]:
        """The LUKS2 header on ``path``; a missing or damaged header is an error naming it."""
        from talos_luks.binding import check, lib

        with cls.handle(path) as vol:
            rc = lib.crypt_load(vol._cd, LUKS2.encode(), _ffi_null())
            if rc < 0:
                try:
                    check(rc, f"{path}: not a LUKS2 volume, or its header is damaged")
                except LuksError as exc:
                    if exc.errno in (12, 16):  # ENOMEM, EBUSY keep their own exit codes
                        raise
                    raise NotLuksError(
                        str(exc),
                        hint="both LUKS2 header copies are missing or fail their checksums",
                        errno=exc.errno,
                    ) from None
            yield vol

    # -- header work ---------------------------------------------------------------------
    def format(self, key: bytes, slot: int, opts: FormatOptions) -> int:
        """Write a new LUKS2 header with a random volume key and put ``key`` in ``slot``."""
        from talos_luks.binding import check, ffi, lib

        if opts.cipher not in CIPHERS:
            raise LuksError(f"--cipher: {opts.cipher!r} is not one of {', '.join(CIPHERS)}")
        if opts.sector_size not in SECTOR_SIZES:
            raise LuksError(f"--sector-size: must be one of {', '.join(map(str, SECTOR_SIZES))}")
        key_size = opts.key_size or default_key_size(opts.cipher)
        if key_size % 8 or key_size <= 0:
            raise LuksError("--key-size: must be a positive multiple of 8 bits")
        _check_slot(slot)
        cipher, mode = opts.cipher.split("-", 1)
        keep: list[Any] = []
        params = ffi.new("struct crypt_params_luks2 *")
        params.pbkdf = opts.pbkdf.to_c(keep)
        params.sector_size = opts.sector_size
        if opts.label:
            label = ffi.new("char[]", opts.label.encode())
            keep.append(label)
            params.label = label
        backup = self._read_head(HEADER_BACKUP)
        check(
            lib.crypt_format(
                self._cd,
                LUKS2.encode(),
                cipher.encode(),
                mode.encode(),
                ffi.NULL,
                ffi.NULL,
                key_size // 8,
                params,
            ),
            f"format {self.path}",
        )
        try:
            return check(
                lib.crypt_keyslot_add_by_volume_key(self._cd, slot, ffi.NULL, 0, key, len(key)),
                f"add key slot {slot} on {self.path}",
            )
        except LuksError:
            # a header without a key slot is worse than none: put back what was there
            self._write_head(backup)
            raise

    def _read_head(self, size: int) -> bytes:
        try:
            with open(self.path, "rb") as fh:
                return fh.read(size)
        except OSError as exc:
            raise WrongDeviceError(f"{self.path}: cannot read: {exc.strerror}") from None

    def _write_head(self, data: bytes) -> None:
        try:
            with open(self.path, "r+b") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as exc:
            raise LuksError(
                f"{self.path}: cannot restore the old header area: {exc.strerror}"
            ) from None

    def set_pbkdf(self, pbkdf: Pbkdf) -> None:
        """Use ``pbkdf`` for key slots added from now on."""
        from talos_luks.binding import check, lib

        keep: list[Any] = []
        check(lib.crypt_set_pbkdf_type(self._cd, pbkdf.to_c(keep)), "--pbkdf")

    def add_key(self, existing: bytes, new: bytes, slot: int = -1) -> int:
        """Add ``new`` in ``slot`` (any free slot when -1), authorised by ``existing``."""
        from talos_luks.binding import check, lib

        if slot != -1:
            _check_slot(slot)
            self._require_free(slot)
        return check(
            lib.crypt_keyslot_add_by_passphrase(
                self._cd, slot, existing, len(existing), new, len(new)
            ),
            f"add key to {self.path}" + (f" slot {slot}" if slot != -1 else ""),
        )

    def destroy_slot(self, slot: int) -> None:
        from talos_luks.binding import check, lib

        _check_slot(slot)
        if not self.slot_active(slot):
            raise LuksError(f"{self.path}: key slot {slot} is not in use")
        check(lib.crypt_keyslot_destroy(self._cd, slot), f"remove key slot {slot} of {self.path}")

    def test_key(self, key: bytes, slot: int = -1) -> int:
        """The slot ``key`` opens (checked by activation without a name); exit-2 error if none."""
        from talos_luks.binding import check, ffi, lib

        if slot != -1:
            _check_slot(slot)
        return check(
            lib.crypt_activate_by_passphrase(self._cd, ffi.NULL, slot, key, len(key), 0),
            f"{self.path}" + (f" key slot {slot}" if slot != -1 else ""),
        )

    def try_key(self, key: bytes, slot: int = -1) -> int | None:
        """Like :meth:`test_key`, but ``None`` for a wrong key instead of raising."""
        from talos_luks.errors import BadPassphraseError

        try:
            return self.test_key(key, slot)
        except BadPassphraseError:
            return None
        except LuksError as exc:
            if exc.errno == 2:  # ENOENT: the slot asked for is empty
                return None
            raise

    def activate(self, name: str, key: bytes, slot: int = -1, flags: int = 0) -> int:
        from talos_luks.binding import check, lib

        rc = lib.crypt_activate_by_passphrase(self._cd, name.encode(), slot, key, len(key), flags)
        if rc < 0 and device_mapper_state(name) == "unavailable":
            # cryptsetup exits 1 here too; the library's own message only says the name is bad
            raise LuksError(
                f"open {self.path} as {name}: device-mapper is not available", hint=DM_HINT
            )
        return check(rc, f"open {self.path} as {name}")

    # -- reading the header -----------------------------------------------------------------
    def slot_active(self, slot: int) -> bool:
        from talos_luks.binding import lib

        return lib.crypt_keyslot_status(self._cd, slot) in (
            lib.CRYPT_SLOT_ACTIVE,
            lib.CRYPT_SLOT_ACTIVE_LAST,
            lib.CRYPT_SLOT_UNBOUND,
        )

    def active_slots(self) -> list[int]:
        return [s for s in range(MAX_SLOTS) if self.slot_active(s)]

    def _require_free(self, slot: int) -> None:
        from talos_luks.errors import DeviceBusyError

        if self.slot_active(slot):
            raise DeviceBusyError(f"{self.path}: key slot {slot} is already in use")

    def set_token(self, token: int, doc: dict[str, Any]) -> int:
        from talos_luks.binding import check, lib

        return check(
            lib.crypt_token_json_set(self._cd, token, _json().dumps(doc).encode()),
            f"set token {token} on {self.path}",
        )

    def describe(self) -> dict[str, Any]:
        """The header as plain data: what ``dump`` prints."""
        from talos_luks.binding import ffi, lib

        def text(p: Any) -> str | None:
            return None if p == ffi.NULL else str(ffi.string(p).decode())

        cipher = text(lib.crypt_get_cipher(self._cd))
        mode = text(lib.crypt_get_cipher_mode(self._cd))
        slots: dict[str, Any] = {}
        for s in self.active_slots():
            pb = ffi.new("struct crypt_pbkdf_type *")
            entry: dict[str, Any] = {"keySize": lib.crypt_keyslot_get_key_size(self._cd, s) * 8}
            if lib.crypt_keyslot_get_pbkdf(self._cd, s, pb) >= 0:
                kdf: dict[str, Any] = {"type": text(pb.type)}
                if text(pb.type) == "pbkdf2":
                    kdf.update(hash=text(pb.hash), iterations=pb.iterations)
                else:
                    kdf.update(
                        time=pb.iterations, memory=pb.max_memory_kb, threads=pb.parallel_threads
                    )
                entry["pbkdf"] = kdf
            slots[str(s)] = entry
        tokens: dict[str, Any] = {}
        for t in range(MAX_SLOTS):
            typ = ffi.new("const char **")
            st = lib.crypt_token_status(self._cd, t, typ)
            if st in (lib.CRYPT_TOKEN_INVALID, lib.CRYPT_TOKEN_INACTIVE):
                continue
            js = ffi.new("const char **")
            doc: Any = None
            if lib.crypt_token_json_get(self._cd, t, js) >= 0:
                doc = _json().loads(ffi.string(js[0]).decode())
            tokens[str(t)] = {"type": text(typ[0]), "keyslots": (doc or {}).get("keyslots", [])}
        return {
            "device": self.path,
            "type": text(lib.crypt_get_type(self._cd)),
            "uuid": text(lib.crypt_get_uuid(self._cd)),
            "cipher": f"{cipher}-{mode}" if mode else cipher,
            "keySize": lib.crypt_get_volume_key_size(self._cd) * 8,
            "sectorSize": lib.crypt_get_sector_size(self._cd),
            "dataOffset": lib.crypt_get_data_offset(self._cd) * 512,
            "keyslots": slots,
            "tokens": tokens,
        }


def _json() -> Any:
    import json

    return json


def _ffi_null() -> Any:
    from talos_luks.binding import ffi

    return ffi.NULL


def _check_slot(slot: int) -> None:
    if not 0 <= slot < MAX_SLOTS:
        raise LuksError(f"--key-slot: {slot} is out of range (0-{MAX_SLOTS - 1})")


DM_HINT = "device-mapper with dm-crypt is needed for open, close and status (modprobe dm_crypt)"


def device_mapper_state(name: str) -> str:
    """``"unavailable"`` (no device-mapper here), ``"inactive"``, ``"active"`` or ``"busy"``:
    libcryptsetup's answer for the mapping ``name``, without needing a handle on it."""
    from talos_luks.binding import lib, mapping_status_code

    return {
        lib.CRYPT_INACTIVE: "inactive",
        lib.CRYPT_ACTIVE: "active",
        lib.CRYPT_BUSY: "busy",
    }.get(mapping_status_code(name), "unavailable")


def mapping_status(name: str) -> dict[str, Any]:
    """The active mapping ``name``: what ``status`` prints.

    As ``cryptsetup status``: exit 1 when device-mapper is unavailable, 4 when ``name`` is not
    an active mapping.
    """
    from talos_luks.binding import check, ffi, lib, open_by_name

    state = device_mapper_state(name)
    if state == "unavailable":
        raise LuksError(f"status {name}: device-mapper is not available", hint=DM_HINT)
    if state == "inactive":
        raise WrongDeviceError(f"/dev/mapper/{name} is inactive")
    with open_by_name(name) as cd:
        st = lib.crypt_status(cd, name.encode())
        if st not in (lib.CRYPT_ACTIVE, lib.CRYPT_BUSY):
            raise WrongDeviceError(f"{name}: not active")
        cad = ffi.new("struct crypt_active_device *")
        check(lib.crypt_get_active_device(cd, name.encode(), cad), f"status of {name}")

        def text(p: Any) -> str | None:
            return None if p == ffi.NULL else str(ffi.string(p).decode())

        cipher, mode = text(lib.crypt_get_cipher(cd)), text(lib.crypt_get_cipher_mode(cd))
        return {
            "name": name,
            "path": f"/dev/mapper/{name}",
            "state": "in use" if st == lib.CRYPT_BUSY else "active",
            "type": text(lib.crypt_get_type(cd)),
            "cipher": f"{cipher}-{mode}" if mode else cipher,
            "keySize": lib.crypt_get_volume_key_size(cd) * 8,
            "device": text(lib.crypt_get_device_name(cd)),
            "sectorSize": lib.crypt_get_sector_size(cd),
            "offset": cad.offset,
            "size": cad.size,
            "readonly": bool(cad.flags & lib.CRYPT_ACTIVATE_READONLY),
        }


def deactivate(name: str) -> None:
    """Remove the mapping ``name``; exit 4 when it is not active or device-mapper is unavailable
    (as ``cryptsetup close``)."""
    from talos_luks.binding import check, lib, open_by_name

    state = device_mapper_state(name)
    if state == "unavailable":
        raise WrongDeviceError(f"close {name}: device-mapper is not available", hint=DM_HINT)
    if state == "inactive":
        raise WrongDeviceError(f"close {name}: no active mapping named {name}")
    with open_by_name(name) as cd:
        check(lib.crypt_deactivate(cd, name.encode()), f"close {name}")
