"""What the commands share: reading certificate/CA inputs in their accepted shapes, durations,
and writing YAML output (0600 when it holds a key)."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from libtalos import fsutil, yamlio
from libtalos.errors import PKIError, Problem, UsageError, ValidationError
from libtalos.secrets import CertKey
from talos_pki.outputs import check_output

if TYPE_CHECKING:
    from libtalos.pki import FixedClock

__all__ = [
    "Found",
    "check_output",
    "check_subject",
    "dns_names",
    "emit",
    "find_certificates",
    "load_cert_key",
    "parse_duration",
    "start_clock",
]

_DURATION = re.compile(r"(\d+)(y|d|h|m|s)")
_MAX_DIGITS = 18
_UNITS = {"y": 365 * 86400, "d": 86400, "h": 3600, "m": 60, "s": 1}
# X.509 times end at 9999-12-31 23:59:59 UTC (GeneralizedTime), as do Python's datetimes.
LAST_NOT_AFTER = dt.datetime(9999, 12, 31, 23, 59, 59, tzinfo=dt.UTC)


def parse_duration(text: str, option: str, *, now: dt.datetime | None = None) -> dt.timedelta:
    """``87600h``, ``30d``, ``1y``, ``1h30m`` ... (y = 365 days); errors name the option. A
    validity must end by 9999-12-31, the last time a certificate can state."""
    value = text.strip()
    pos, seconds = 0, 0
    for match in _DURATION.finditer(value):
        if match.start() != pos:
            break
        digits = match.group(1).lstrip("0") or "0"
        # 19 digits of seconds already pass 9999-12-31; converting more is needless work.
        count = int(digits) if len(digits) <= _MAX_DIGITS else 10**_MAX_DIGITS
        seconds += count * _UNITS[match.group(2)]
        pos = match.end()
    shown = text if len(text) <= 40 else text[:40] + "..."
    if not value or pos != len(value):
        raise UsageError(f"{option}: {shown!r} is not a duration (use e.g. 87600h, 30d, 1y, 1h30m)")
    if seconds <= 0:
        raise UsageError(f"{option}: the duration must be positive")
    start = now or dt.datetime.now(dt.UTC)
    longest = int((LAST_NOT_AFTER - start).total_seconds())
    if seconds > longest:
        raise UsageError(
            f"{option}: {shown} is too long: a certificate cannot be valid past 9999-12-31 "
            f"(at most {longest // _UNITS['y']}y from now)"
        )
    return dt.timedelta(seconds=seconds)


def start_clock() -> FixedClock:
    """The clock of one command: "now", stopped, so that the bound :func:`parse_duration`
    checks and the certificate's validity are computed from the same instant (a slow key
    generation cannot push a validity that fits past 9999-12-31)."""
    from libtalos.pki import FixedClock

    return FixedClock(dt.datetime.now(dt.UTC).replace(microsecond=0))


UB_NAME = 64  # RFC 5280's upper bound for a CN and an O (ub-common-name, ub-organization-name)


def check_subject(option: str, values: list[str]) -> None:
    """Subject attributes X.509 can carry: valid UTF-8 of 1 to 64 bytes (the bound counted in
    bytes, as cryptography applies it to a CN), no control characters."""
    for value in values:
        shown = f"{value[:40]!r}{'...' if len(value) > 40 else ''}"
        try:
            size = len(value.encode("utf-8"))
        except UnicodeEncodeError:  # undecodable bytes on the command line
            raise UsageError(f"{option}: {shown} is not valid UTF-8") from None
        if not 1 <= size <= UB_NAME:
            raise UsageError(
                f"{option}: {shown} must be 1 to {UB_NAME} bytes in UTF-8 (X.509's limit), "
                f"not {size}"
            )
        if any(ord(c) < 32 or 127 <= ord(c) < 160 for c in value):
            raise UsageError(f"{option}: {shown} holds a control character")


_DNS_LABEL = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")


def dns_names(values: list[str]) -> list[str]:
    """``--dns`` values as certificates carry them: ASCII (an internationalised name becomes its
    IDNA A-label form, ``ü.example`` -> ``xn--tda.example``), optionally ``*.`` first."""
    out = []
    for value in values:
        wildcard = value.startswith("*.")
        name = value[2:] if wildcard else value
        try:
            ascii_name = name.encode("idna").decode("ascii") if not name.isascii() else name
        except UnicodeError:
            raise UsageError(f"--dns: {value!r} is not a valid DNS name") from None
        labels = ascii_name.rstrip(".").split(".")
        if len(ascii_name) > 253 or not all(_DNS_LABEL.fullmatch(lb) for lb in labels):
            raise UsageError(f"--dns: {value!r} is not a valid DNS name")
        out.append(("*." if wildcard else "") + ascii_name.rstrip("."))
    return out


def emit(data: dict[str, Any], output: str, *, force: bool, secret: bool) -> None:
    """Dump ``data`` as YAML to ``output`` (``-`` is stdout); key-holding files are 0600."""
    mode = fsutil.SECRET_MODE if secret else fsutil.PUBLIC_MODE
    fsutil.write_output(output, yamlio.dump(data), mode=mode, force=force)


def _b64_pem(value: str) -> bytes | None:
    """Base64 of a PEM block, or None."""
    try:
        decoded = base64.b64decode("".join(value.split()), validate=True)
    except (binascii.Error, ValueError):
        return None
    return decoded if b"-----BEGIN " in decoded else None


_CA_KEYS = {"crt", "key"}
BUNDLE_ENTRIES = {
    "os": "talos_ca",
    "k8s": "kubernetes_ca",
    "etcd": "etcd_ca",
    "k8saggregator": "aggregator_ca",
}


def load_cert_key(text: str, source: str, *, bundle_entry: str = "") -> CertKey:
    """A certificate with its key from: PEM text holding both blocks, Talos's YAML shape
    ``{crt: base64 PEM, key: base64 PEM}``, or a secrets bundle (``bundle_entry`` picks the CA:
    os, k8s, etcd, k8saggregator)."""
    if "-----BEGIN " in text:
        data = text.encode()
        return CertKey(data, data)  # pki takes the first CERTIFICATE and first key block
    doc = yamlio.load_one(text, source)
    if isinstance(doc.data, dict) and "certs" in doc.data:
        from libtalos.secrets import load_bundle

        bundle = load_bundle(text, source)
        entry = bundle_entry or ""
        attr = BUNDLE_ENTRIES.get(entry)
        if attr is None:
            raise UsageError(
                f"{source}: is a secrets bundle; choose its CA with --bundle-ca "
                f"({', '.join(BUNDLE_ENTRIES)})"
            )
        pair = getattr(bundle, attr)
        if pair is None:
            raise PKIError(f"{source}: the bundle has no certs.{entry}")
        assert isinstance(pair, CertKey)  # noqa: S101 - the bundle's fields are typed
        return pair
    if not isinstance(doc.data, dict):
        raise ValidationError([doc.problem((), "must be a mapping with crt and key")])
    problems: list[Problem] = []
    values: dict[str, bytes] = {}
    for key, value in doc.data.items():
        if key not in _CA_KEYS:
            problems.append(doc.problem((key,), "unknown key (expected crt and key)"))
            continue
        pem = _b64_pem(value) if isinstance(value, str) else None
        if pem is None:
            problems.append(doc.problem((key,), "must be base64 of a PEM block"))
            continue
        values[key] = pem
    problems += [doc.problem((k,), "is required") for k in sorted(_CA_KEYS - doc.data.keys())]
    if problems:
        raise ValidationError(problems)
    return CertKey(values["crt"], values["key"])


@dataclass(frozen=True)
class Found:
    """A certificate found in an input, and the private key stored beside it, if any."""

    label: str  # "" for a bare PEM / base64 input, else the YAML key path
    crt: bytes
    key: bytes | None = None


def find_certificates(text: str, source: str) -> list[Found]:
    """Every certificate in an input: PEM text or base64 of PEM (label ``""``), or any YAML
    document (a ``{crt, key}`` pair, a secrets bundle, a talosconfig, a machine config), where
    each string value that is base64 of a PEM certificate is labelled by its key path; a ``crt``
    is paired with its sibling ``key`` (base64 of a PEM private key) when there is one."""
    if "-----BEGIN " in text:
        return [Found("", text.encode())]
    pem = _b64_pem(text)
    if pem is not None:
        return [Found("", pem)]
    found: list[Found] = []
    for doc in yamlio.load_documents(text, source):
        for path in yamlio.iter_paths(doc.data):
            parent: Any = None
            value: Any = doc.data
            for part in path:
                parent, value = value, value[part]
            pem = _b64_pem(value) if isinstance(value, str) else None
            if pem is None or b"-----BEGIN CERTIFICATE-----" not in pem:
                continue
            label = yamlio.format_path(path)
            if doc.index > 1:
                label = f"document {doc.index}: {label}"
            # Talos pairs `crt` with `key` (bundle, talosconfig); a talosconfig's `ca` has no key.
            sibling = parent.get("key") if isinstance(parent, dict) and path[-1] == "crt" else None
            key = _b64_pem(sibling) if isinstance(sibling, str) else None
            found.append(Found(label, pem, key if key and b"PRIVATE KEY-----" in key else None))
    if not found:
        raise PKIError(f"{source}: no certificate found (PEM, base64 of PEM, or YAML holding one)")
    return found


CERT_KEYS = ("crt", "ca")  # the keys under which Talos's YAML holds certificates


def unreadable_certificates(text: str, source: str) -> list[str]:
    """Key paths of a YAML input where a certificate belongs (a ``crt`` or ``ca`` string) but
    the value is not base64 of a PEM certificate: what :func:`find_certificates` cannot read."""
    if "-----BEGIN " in text or _b64_pem(text) is not None:
        return []
    bad: list[str] = []
    for doc in yamlio.load_documents(text, source):
        for path in yamlio.iter_paths(doc.data):
            if not path or path[-1] not in CERT_KEYS:
                continue
            value: Any = doc.data
            for part in path:
                value = value[part]
            if not isinstance(value, str) or not value:
                continue
            pem = _b64_pem(value)
            if pem is None or b"-----BEGIN CERTIFICATE-----" not in pem:
                label = yamlio.format_path(path)
                line = doc.line(path)
                where = f"{source}:{line}" if line else source
                bad.append(f"{where}: {label}: not base64 of a PEM certificate")
    return bad


def load_one_certificate(text: str, source: str) -> bytes:
    """The certificate of an input that holds one (a YAML ``{crt, key}`` pair counts as one)."""
    found = find_certificates(text, source)
    if len(found) > 1:
        raise PKIError(
            f"{source}: holds {len(found)} certificates "
            f"({', '.join(f.label for f in found)}); give a file with one"
        )
    return found[0].crt
