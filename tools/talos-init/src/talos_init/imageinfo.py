"""The OS image's identity, for the Version RPC: ``/etc/talos-image/version.json``.

A node booted from the image built by talos-image has that manifest in its read-only root
(written by ``talos_image.rootfs``: ``version``, ``commit``, ``kernel``, ``packages``). Talos's
``VersionInfo`` then names the image: ``tag`` is the image's version (``v`` + ``version``, the
form of Talos's tags) and ``sha`` its commit (docs/talos-facts.md#image-version). A node
without the file (container mode, a development checkout) reports talos-init's own version, as
before. A file that cannot be read or parsed never fails the RPC: the reply falls back to
talos-init's own version and the problem is written once to the console, naming the file.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from libtalos.errors import TalosError

if TYPE_CHECKING:
    from talos_init.api.node import VersionInfo

VERSION_FILE = Path("/etc/talos-image/version.json")
REQUIRED = ("version", "commit")
MAX_BYTES = 64 * 1024  # the manifest is a few hundred bytes; more is not a manifest


class ImageInfoError(TalosError):
    """The manifest exists but is not usable (the message names the file and the key)."""


@dataclass(frozen=True)
class ImageInfo:
    version: str
    commit: str
    kernel: str = ""
    packages: str = ""  # sha256 of the image's package list

    @property
    def tag(self) -> str:
        return self.version if self.version.startswith("v") else f"v{self.version}"


def read(path: Path | None = None) -> ImageInfo | None:
    """The manifest at ``path`` (default :data:`VERSION_FILE`); ``None`` when there is none.

    Raises :class:`ImageInfoError`.
    """
    path = VERSION_FILE if path is None else path
    try:
        with path.open("rb") as fh:
            raw = fh.read(MAX_BYTES + 1)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ImageInfoError(f"{path}: cannot read: {exc.strerror}") from None
    if len(raw) > MAX_BYTES:
        raise ImageInfoError(f"{path}: larger than {MAX_BYTES} bytes")
    try:
        data = json.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ImageInfoError(f"{path}: not UTF-8 text") from None
    except json.JSONDecodeError as exc:
        raise ImageInfoError(f"{path}: not JSON: {exc.msg} (line {exc.lineno})") from None
    if not isinstance(data, dict):
        raise ImageInfoError(f"{path}: expected a JSON object, got {type(data).__name__}")
    fields: dict[str, str] = {}
    for key in ("version", "commit", "kernel", "packages"):
        value = data.get(key, "")
        if not isinstance(value, str):
            raise ImageInfoError(f"{path}: {key}: expected a string, got {type(value).__name__}")
        if key in REQUIRED and not value.strip():
            raise ImageInfoError(f"{path}: {key}: missing or empty")
        fields[key] = value.strip()
    return ImageInfo(**fields)


_reported: set[str] = set()


def _warn_once(message: str) -> None:
    if message in _reported:
        return
    _reported.add(message)
    try:
        sys.stderr.write(f"[talos] {message}\n")
        sys.stderr.flush()
    except (OSError, ValueError):  # no console: the reply is what matters
        pass


def overlay(
    version: VersionInfo,
    path: Path | None = None,
    *,
    warn: Callable[[str], None] = _warn_once,
) -> VersionInfo:
    """``version`` with the image's ``tag`` and ``sha`` when ``path`` (default
    :data:`VERSION_FILE`) holds a manifest; as it is when there is none, or (after one
    ``warn``) when the manifest is unusable."""
    try:
        info = read(path)
    except ImageInfoError as exc:
        warn(f"{exc.message}; Version reports talos-init's own version")
        return version
    if info is None:
        return version
    return dataclasses.replace(version, tag=info.tag, sha=info.commit)
