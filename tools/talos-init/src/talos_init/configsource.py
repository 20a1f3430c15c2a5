"""Where the machine config comes from, and how it is kept (the one module handling config).

Order, as in Talos (docs/talos-facts.md#maintenance-mode): the ``talos.config=URL`` kernel
parameter (or ``--config``), then the config persisted in STATE (``/system/state/config.yaml``),
else maintenance mode, which waits for a config: one applied through the machine API
(``apply-config --insecure``), or a file dropped into STATE as ``apply-config.yaml``.

A config is loaded and validated by the v1alpha1 model of ``libtalos.config`` (strict: unknown
keys, wrong types, and ``talosctl validate``'s rules for the node's mode, each problem with its
line); :class:`NodeConfig` keeps that model and reads from it the parts talos-init applies
itself (``machine.type``, ``machine.network.hostname`` and ``interfaces``, ``machine.files``,
``machine.sysctls``).
"""

from __future__ import annotations

import contextlib
import gzip
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import SplitResult, parse_qsl, urlencode, urlsplit, urlunsplit

from libtalos.errors import TalosError
from libtalos.fsutil import SECRET_MODE, atomic_write

if TYPE_CHECKING:
    from libtalos.config import Config
    from libtalos.config.v1alpha1 import Device

CONFIG_NAME = "config.yaml"
DROP_NAME = "apply-config.yaml"
FETCH_TIMEOUT = 70.0  # Talos's bound on fetching talos.config


class ConfigFetchError(TalosError):
    """The config could not be fetched from its URL (the message names the URL, not the data)."""


@dataclass(frozen=True)
class UserFile:
    """One of ``machine.files`` as the node writes it (the model's defaults applied)."""

    path: str
    content: str
    permissions: int
    op: str


@dataclass(frozen=True)
class NodeConfig:
    """A loaded, validated machine config: its text and source, the typed libtalos model, and
    its validation warnings (rendered). The parts talos-init applies itself are read from
    ``model``."""

    text: str
    source: str
    model: Config
    warnings: tuple[str, ...] = ()

    @property
    def machine_type(self) -> str:
        return self.model.machine.type

    @property
    def hostname(self) -> str | None:
        """``machine.network.hostname``; ``None`` when unset or empty (as in Talos)."""
        network = self.model.machine.network
        return (network.hostname if network is not None else "") or None

    @property
    def files(self) -> tuple[UserFile, ...]:
        return tuple(
            UserFile(f.path, f.content, f.mode(), f.operation()) for f in self.model.machine.files
        )

    @property
    def sysctls(self) -> dict[str, str]:
        return dict(self.model.machine.sysctls)

    @property
    def interfaces(self) -> tuple[Device, ...]:
        """``machine.network.interfaces``, in order (:func:`talos_init.network.apply` takes
        them)."""
        return tuple(self.model.machine.interfaces())


def parse(text: str, source: str, mode: str = "container") -> NodeConfig:
    """Load and validate for ``mode``: the rules of ``talosctl validate``.

    Raises :class:`~libtalos.errors.DocumentError` naming the source, key and line of every
    problem.
    """
    from libtalos.config import load, validate

    loaded = load(text, source)
    result = validate(loaded.config, mode)
    result.raise_for_errors()
    warnings = tuple(p.render() for p in result.warnings)
    return NodeConfig(text, source, loaded.config, warnings)


# -- sources ------------------------------------------------------------------------------------


def smbios_uuid() -> str | None:
    try:
        return Path("/sys/class/dmi/id/product_uuid").read_text().strip() or None
    except OSError:
        return None


def expand_url(url: str, uuid: str | None) -> str:
    """Fill an empty ``uuid`` query parameter with the SMBIOS UUID, as Talos does.

    A malformed URL is returned as it is: :func:`fetch` reports it.
    """
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    query = parse_qsl(parts.query, keep_blank_values=True)
    if uuid and any(k == "uuid" and not v for k, v in query):
        query = [(k, uuid if k == "uuid" and not v else v) for k, v in query]
        return urlunsplit(parts._replace(query=urlencode(query)))
    return url


def fetch(url: str, timeout: float = FETCH_TIMEOUT) -> str:
    """Read a config from ``file://``, ``http://`` or ``https://`` (gzip is detected)."""
    import urllib.error  # here: urllib.request (with http.client and email) costs PID 1 MiBs
    import urllib.request

    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. an unclosed '[' of an IPv6 host
        raise ConfigFetchError(f"{url}: not a valid URL") from None
    if parts.scheme == "file":
        try:
            raw = Path(parts.path).read_bytes()
        except OSError as exc:
            raise ConfigFetchError(f"{url}: cannot read: {exc.strerror}") from None
    elif parts.scheme in ("http", "https"):
        _check_http_url(url, parts)
        try:
            with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 - scheme checked above
                raw = resp.read()
        except urllib.error.HTTPError as exc:
            raise ConfigFetchError(f"{url}: HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise ConfigFetchError(f"{url}: cannot fetch: {reason}") from None
        except ValueError as exc:  # http.client.InvalidURL, an IDNA encoding failure
            raise ConfigFetchError(f"{url}: not a valid URL ({exc})") from None
    else:
        raise ConfigFetchError(f"{url}: unsupported scheme (use file://, http:// or https://)")
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError):
            raise ConfigFetchError(f"{url}: corrupt gzip data") from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigFetchError(f"{url}: not UTF-8 text") from None


def _check_http_url(url: str, parts: SplitResult) -> None:
    """The host and port of an http(s) URL follow :mod:`libtalos.endpoint`'s rules."""
    from libtalos.endpoint import host_problem

    problem = host_problem(parts.hostname or "")
    if problem is None:
        try:
            port = parts.port
        except ValueError:
            problem = "has an invalid port"
        else:
            if port == 0:
                problem = "port 0 is out of range (1-65535)"
    if problem is not None:
        raise ConfigFetchError(f"{url}: not a valid URL: {problem}")


def persist(state_dir: str | Path, config: NodeConfig) -> Path:
    """Write the config into STATE atomically (temp file, fsync, rename), mode 0600."""
    return atomic_write(Path(state_dir) / CONFIG_NAME, config.text, mode=SECRET_MODE)


def load_persisted(state_dir: str | Path, mode: str = "container") -> NodeConfig | None:
    """The config kept in STATE, or ``None`` when there is none. Bad content raises."""
    path = Path(state_dir) / CONFIG_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeError) as exc:
        raise ConfigFetchError(f"{path}: cannot read: {getattr(exc, 'strerror', exc)}") from None
    return parse(text, str(path), mode)


def remove_stale_temp(state_dir: str | Path) -> int:
    """Temp files left by a write that was killed midway (``.config.yaml.PID.tmp``)."""
    count = 0
    for stale in Path(state_dir).glob(f".{CONFIG_NAME}.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()
            count += 1
    return count


def parse_cmdline(text: str) -> dict[str, str]:
    """Kernel command line ``key=value`` pairs (a bare ``key`` maps to ``""``); last one wins.

    Words after ``--`` are the init's own arguments, not kernel parameters.
    """
    out: dict[str, str] = {}
    for word in text.split():
        if word == "--":
            break
        key, _, value = word.partition("=")
        out[key] = value
    return out


def read_drop(state_dir: str | Path) -> tuple[str, str] | None:
    """A config dropped into STATE for maintenance mode: ``(text, path)``, or ``None``."""
    path = Path(state_dir) / DROP_NAME
    try:
        return path.read_text(encoding="utf-8"), str(path)
    except FileNotFoundError:
        return None
    except (OSError, UnicodeError):
        return "", str(path)


def secure_mode(path: str | Path) -> int:
    return os.stat(path).st_mode & 0o777
