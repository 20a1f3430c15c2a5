"""Reading ``machine.systemDiskEncryption.<state|ephemeral>`` from a machine config, strictly.

The document must be a machine config that libtalos's v1alpha1 model accepts; this tool then
reads only the encryption subtree. Unknown
keys, wrong types, duplicate slots and unknown providers are reported all at once with their key
path and line, never with a passphrase's value. Keys later Talos releases added are accepted:
``keySize`` (bits), ``blockSize`` (sector size) and ``options`` (dm-crypt performance flags).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from libtalos.errors import Problem, ValidationError
from libtalos.yamlio import Document, Path
from talos_luks.volume import CIPHERS, MAX_SLOTS, SECTOR_SIZES

OPTIONS = ("no_read_workqueue", "no_write_workqueue", "same_cpu_crypt")


@dataclass(frozen=True)
class KeySpec:
    """One ``keys[]`` entry: a slot and where its passphrase comes from."""

    slot: int
    kind: str  # "static" or "nodeID"
    passphrase: bytes | None = field(default=None, repr=False)  # static only; never printed


@dataclass(frozen=True)
class EncryptionSpec:
    provider: str
    keys: tuple[KeySpec, ...]
    cipher: str = "aes-xts-plain64"
    key_size: int = 0  # 0: the cipher's default
    block_size: int = 512
    options: tuple[str, ...] = ()


_ALLOWED = {"provider", "keys", "cipher", "keySize", "blockSize", "options"}


def read_encryption(text: str, source: str, partition: str) -> EncryptionSpec | None:
    """The encryption config of ``partition`` (STATE or EPHEMERAL), or ``None`` when absent.

    The whole document is decoded strictly against libtalos's v1alpha1 model first (unknown keys
    anywhere, wrong types, a document that is not a machine config); the subtree is then checked
    for what this tool can do, with the line of every problem.
    """
    from libtalos.config import load

    doc = load(text, source).document
    node: Any = doc.data
    path: Path = ()
    for key in ("machine", "systemDiskEncryption", partition.lower()):
        if not isinstance(node, dict) or node.get(key) is None:
            return None
        path = (*path, key)
        node = node[key]
    problems: list[Problem] = []
    spec = _spec(doc, path, node, problems)
    if problems or spec is None:
        raise ValidationError(problems)
    return spec


def _spec(doc: Document, path: Path, node: Any, problems: list[Problem]) -> EncryptionSpec | None:
    def bad(p: Path, message: str) -> None:
        problems.append(doc.problem(p, message))

    if not isinstance(node, dict):
        bad(path, "must be a mapping")
        return None
    for key in node:
        if key not in _ALLOWED:
            bad((*path, key), "unknown key")
    provider = node.get("provider")
    if provider != "luks2":
        bad((*path, "provider"), "must be luks2" if provider is not None else "is required (luks2)")
    cipher = node.get("cipher") or "aes-xts-plain64"
    if not isinstance(cipher, str) or cipher not in CIPHERS:
        bad((*path, "cipher"), f"must be one of {', '.join(CIPHERS)}")
    key_size = node.get("keySize", 0) or 0
    if isinstance(key_size, bool) or not isinstance(key_size, int) or key_size < 0 or key_size % 8:
        bad((*path, "keySize"), "must be a positive number of bits, a multiple of 8")
    block_size = node.get("blockSize", 512) or 512
    if isinstance(block_size, bool) or block_size not in SECTOR_SIZES:
        bad((*path, "blockSize"), f"must be one of {', '.join(map(str, SECTOR_SIZES))}")
    options = node.get("options") or []
    if not isinstance(options, list):
        bad((*path, "options"), "must be a list")
        options = []
    for i, opt in enumerate(options):
        if opt not in OPTIONS:
            bad((*path, "options", i), f"must be one of {', '.join(OPTIONS)}")
    keys: list[KeySpec] = []
    raw_keys = node.get("keys")
    if not isinstance(raw_keys, list) or not raw_keys:
        bad((*path, "keys"), "must be a non-empty list")
        raw_keys = []
    seen: dict[int, int] = {}
    for i, entry in enumerate(raw_keys):
        kp = (*path, "keys", i)
        key = _key(doc, kp, entry, bad)
        if key is None:
            continue
        if key.slot in seen:
            bad((*kp, "slot"), f"slot {key.slot} is already used by keys[{seen[key.slot]}]")
            continue
        seen[key.slot] = i
        keys.append(key)
    if problems:
        return None
    return EncryptionSpec(
        provider="luks2",
        keys=tuple(sorted(keys, key=lambda k: k.slot)),
        cipher=str(cipher),
        key_size=int(key_size),
        block_size=int(block_size),
        options=tuple(options),
    )


def _key(doc: Document, kp: Path, entry: Any, bad: Any) -> KeySpec | None:
    if not isinstance(entry, dict):
        bad(kp, "must be a mapping")
        return None
    ok = True
    for key in entry:
        if key not in ("slot", "static", "nodeID"):
            bad((*kp, key), "unknown key")
            ok = False
    slot = entry.get("slot")
    if isinstance(slot, bool) or not isinstance(slot, int) or not 0 <= slot < MAX_SLOTS:
        bad((*kp, "slot"), f"is required: a key slot number 0-{MAX_SLOTS - 1}")
        ok = False
        slot = -1
    kinds = [k for k in ("static", "nodeID") if k in entry]
    if len(kinds) != 1:
        bad(kp, "needs exactly one of static or nodeID")
        return None
    if kinds == ["nodeID"]:
        value = entry["nodeID"]
        if value not in (None, {}):
            bad((*kp, "nodeID"), "takes no settings ({})")
            ok = False
        return KeySpec(slot=slot, kind="nodeID") if ok else None
    static = entry["static"]
    if not isinstance(static, dict):
        bad((*kp, "static"), "must be a mapping with passphrase")
        return None
    for key in static:
        if key != "passphrase":
            bad((*kp, "static", key), "unknown key")
            ok = False
    passphrase = static.get("passphrase")
    if not isinstance(passphrase, str) or not passphrase:
        bad((*kp, "static", "passphrase"), "must be a non-empty string")
        return None
    return KeySpec(slot=slot, kind="static", passphrase=passphrase.encode()) if ok else None
