"""Parsing endpoints: the one place that says what a host, a port and an endpoint URL are.

Two shapes are parsed, each by one function:

* :func:`parse_address` -- ``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address, as
  talosctl takes for ``--endpoints`` and the talosconfig's ``endpoints`` (no scheme);
* :func:`parse_url` -- ``SCHEME://host[:port][/path]`` with the schemes the caller allows, as
  the cluster endpoint ``https://host:6443``.

A host is a DNS name (RFC 1123 labels of letters, digits and ``-``, at most 63 characters each,
at most 253 in all), an IPv4 address, or an IPv6 address (in brackets wherever a port may
follow). A port is 1-65535. Whitespace, control characters and non-ASCII text are refused, and
so is anything longer than :data:`MAX_LENGTH` before any other work is done.

A bad endpoint raises :class:`EndpointError`, a :class:`~libtalos.errors.UsageError` and a
:class:`ValueError`, whose message names the argument (``what``), shows the value (shortened,
user information masked) and says what is wrong; ``reason`` holds the last part alone.
"""

from __future__ import annotations

import re

from libtalos.errors import UsageError

MAX_LENGTH = 1024  # characters of a whole endpoint
MAX_HOST = 253  # characters of a DNS name (RFC 1035 §2.3.4, without the trailing dot)
_SHOWN = 80  # characters of the value quoted in a message

_LABEL = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?")
_PORT = re.compile(r"[0-9]{1,5}")
_IPV4_LIKE = re.compile(r"[0-9.]+")
_BAD_CHARS = re.compile(r"[\x00-\x20\x7f-\U0010ffff]")
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")


class EndpointError(UsageError, ValueError):
    """An endpoint (address or URL) is malformed; ``reason`` says how, without the value."""

    def __init__(self, what: str, value: str, reason: str, *, hint: str | None = None) -> None:
        super().__init__(f"{what} {_show(value)}: {reason}", hint=hint)
        self.what = what
        self.reason = reason


class Endpoint:
    """A parsed endpoint: ``scheme`` ("" for an address), ``host`` (IPv6 without brackets),
    ``port`` (``None`` when not given) and ``path`` ("" when none)."""

    __slots__ = ("host", "path", "port", "scheme")

    scheme: str
    host: str
    port: int | None
    path: str

    def __init__(self, host: str, port: int | None, scheme: str = "", path: str = "") -> None:
        for name, value in (("host", host), ("port", port), ("scheme", scheme), ("path", path)):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Endpoint is immutable: cannot set {name}")

    def _key(self) -> tuple[str, str, int | None, str]:
        return (self.scheme, self.host, self.port, self.path)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Endpoint):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"Endpoint(host={self.host!r}, port={self.port!r}, scheme={self.scheme!r}, "
            f"path={self.path!r})"
        )

    @property
    def is_ipv6(self) -> bool:
        return ":" in self.host

    def hostport(self, default_port: int | None = None) -> str:
        """``host:port`` (IPv6 in brackets); without a port when there is none."""
        port = self.port if self.port is not None else default_port
        host = f"[{self.host}]" if self.is_ipv6 else self.host
        return host if port is None else f"{host}:{port}"

    def __str__(self) -> str:
        prefix = f"{self.scheme}://" if self.scheme else ""
        return f"{prefix}{self.hostport()}{self.path}"


def _show(value: str) -> str:
    """The value as quoted in a message: user information masked, long values shortened."""
    head, sep, rest = value.partition("://")
    if sep:
        netloc, slash, tail = rest.partition("/")
        if "@" in netloc:
            value = f"{head}://***@{netloc.rpartition('@')[2]}{slash}{tail}"
    if len(value) > _SHOWN:
        value = f"{value[:_SHOWN]}... ({len(value)} characters)"
    return repr(value)


def host_problem(host: str) -> str | None:
    """What is wrong with a bare host (DNS name, IPv4 or IPv6 without brackets); None if fine."""
    import ipaddress  # here: most endpoints are DNS names or checked by the patterns alone

    if not host:
        return "has no host"
    if len(host) > MAX_HOST:
        return f"host is longer than {MAX_HOST} characters"
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            return f"host {_show(host)} is not a valid IPv6 address"
        return None
    if _IPV4_LIKE.fullmatch(host) or host.rpartition(".")[2].isdigit():
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            return f"host {_show(host)} is not a valid IPv4 address"
        return None
    for label in host.split("."):
        if not _LABEL.fullmatch(label):
            return (
                f"host {_show(host)} is not a valid DNS name (labels of letters, digits and "
                "'-', 1-63 characters, not starting or ending with '-')"
            )
    return None


def _port(text: str) -> int | str:
    """The port number, or the reason it is not one."""
    if not text:
        return "has an empty port"
    if not _PORT.fullmatch(text):
        return f"port {_show(text)} is not a number"
    port = int(text)
    if not 1 <= port <= 65535:
        return f"port {port} is out of range (1-65535)"
    return port


def _precheck(value: str) -> str | None:
    if not value:
        return "is empty"
    if len(value) > MAX_LENGTH:
        return f"is longer than {MAX_LENGTH} characters"
    bad = _BAD_CHARS.search(value)
    if bad is not None:
        kind = "whitespace" if bad.group().isspace() else "a control or non-ASCII character"
        return f"contains {kind} (at position {bad.start() + 1})"
    return None


def _split_hostport(text: str, *, bare_ipv6: bool) -> tuple[str, int | None] | str:
    """``(host, port)`` of ``host[:port]`` / ``[v6][:port]``, or the reason it is malformed."""
    if text.startswith("["):
        host, close, rest = text[1:].partition("]")
        if not close:
            return "has '[' without a closing ']'"
        if ":" not in host:
            return "brackets are only for IPv6 addresses"
        if rest and not rest.startswith(":"):
            return f"unexpected {_show(rest)} after ']'"
        problem = host_problem(host)
        if problem is not None:
            return problem
        if not rest:
            return host, None
        port = _port(rest[1:])
        return port if isinstance(port, str) else (host, port)
    if "]" in text:
        return "has ']' without an opening '['"
    if text.count(":") > 1:
        if host_problem(text) is not None:
            return "has more than one ':' (host:port, or [v6]:port for IPv6)"
        if bare_ipv6:
            return text, None
        return "an IPv6 address must be in brackets"
    host, colon, port_text = text.partition(":")
    problem = host_problem(host)
    if problem is not None:
        return problem
    if not colon:
        return host, None
    port = _port(port_text)
    return port if isinstance(port, str) else (host, port)


def parse_address(value: str, *, what: str = "endpoint") -> Endpoint:
    """``host``, ``host:port``, ``[v6]:port``, ``[v6]`` or a bare IPv6 address; no scheme.

    ``what`` names the argument in the message, e.g. ``--endpoints``.
    """
    problem = _precheck(value)
    if problem is None:
        scheme = _SCHEME.match(value)
        if scheme is not None or value.startswith("//"):
            problem = "must be host or host:port, without a scheme"
            return _raise(what, value, problem, hint="e.g. 10.5.0.2 or 10.5.0.2:50000")
        if "/" in value or "@" in value or "?" in value or "#" in value:
            problem = "must be host or host:port (no path, user or query)"
    if problem is None:
        result = _split_hostport(value, bare_ipv6=True)
        if not isinstance(result, str):
            return Endpoint(result[0], result[1])
        problem = result
    return _raise(what, value, problem)


def parse_url(
    value: str, *, what: str = "endpoint", schemes: tuple[str, ...] = ("https",)
) -> Endpoint:
    """``SCHEME://host[:port][/path]`` with a scheme of ``schemes`` (compared lowercase)."""
    problem = _precheck(value)
    if problem is None:
        match = _SCHEME.match(value)
        allowed = " or ".join(schemes)
        if match is None or match.group(1).lower() not in schemes:
            problem = f"must be a URL with the {allowed} scheme"
        else:
            rest = value[match.end() :]
            netloc, slash, path = rest.partition("/")
            if "?" in rest or "#" in rest:
                problem = "must not have a query or fragment"
            elif "@" in netloc:
                problem = "must not contain user information"
            else:
                result = _split_hostport(netloc, bare_ipv6=False)
                if not isinstance(result, str):
                    host, port = result
                    return Endpoint(host, port, match.group(1).lower(), slash + path)
                problem = result
    return _raise(what, value, problem)


def _raise(what: str, value: str, problem: str, *, hint: str | None = None) -> Endpoint:
    raise EndpointError(what, value, problem, hint=hint)
