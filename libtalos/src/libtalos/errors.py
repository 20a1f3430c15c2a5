"""One exception hierarchy and one exit-code table for every tool.

Each tool's ``main(argv)`` lets these propagate to :func:`libtalos.cli.run`, the one place that
turns an exception into a message on stderr and an exit code. Messages never contain secrets:
exceptions are built from key paths, file names and line numbers, never from values that may be
key material.
"""

from __future__ import annotations

import enum

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Iterable


class ExitCode(enum.IntEnum):
    """Exit codes shared by the tools (talos-luks and talos-init keep their own tables)."""

    OK = 0
    FAILURE = 1  # the command ran and failed: bad input data, I/O, crypto, network
    USAGE = 2  # the command line itself is wrong: unknown flag, bad argument value
    INTERRUPTED = 130  # Ctrl-C (128 + SIGINT)


class TalosError(Exception):
    """Base of every error a tool reports to its user.

    ``hint`` is an optional second line suggesting a fix.
    """

    exit_code: ExitCode = ExitCode.FAILURE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


class UsageError(TalosError):
    """A command-line argument is wrong (exit 2)."""

    exit_code = ExitCode.USAGE


class OutputExistsError(TalosError):
    """An output file exists and ``--force`` was not given."""


class TalosIOError(TalosError):
    """Reading or writing a file failed (named in the message)."""


class Problem:
    """One problem found in a document: where it is and what is wrong.

    A plain immutable value class (not a dataclass: importing dataclasses costs the fast paths
    of every tool, which import this module, about 10 ms).
    """

    __slots__ = ("document", "line", "message", "path", "source")

    message: str
    path: str  # dotted key path, e.g. "machine.network.interfaces[0].cidr"
    line: int | None  # 1-based line in the source
    source: str  # file name or "<stdin>"
    document: int | None  # 1-based index of the document in a multi-document stream

    def __init__(
        self,
        message: str,
        path: str = "",
        line: int | None = None,
        source: str = "",
        document: int | None = None,
    ) -> None:
        for name, value in (
            ("message", message),
            ("path", path),
            ("line", line),
            ("source", source),
            ("document", document),
        ):
            object.__setattr__(self, name, value)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"Problem is immutable: cannot set {name}")

    def _key(self) -> tuple[str, str, int | None, str, int | None]:
        return (self.message, self.path, self.line, self.source, self.document)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Problem):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"Problem(message={self.message!r}, path={self.path!r}, line={self.line!r}, "
            f"source={self.source!r}, document={self.document!r})"
        )

    def render(self) -> str:
        where = []
        if self.source:
            where.append(self.source if self.line is None else f"{self.source}:{self.line}")
        elif self.line is not None:
            where.append(f"line {self.line}")
        if self.document is not None:
            where.append(f"document {self.document}")
        prefix = " ".join(where)
        key = f"{self.path}: " if self.path else ""
        return f"{prefix}: {key}{self.message}" if prefix else f"{key}{self.message}"


class DocumentError(TalosError):
    """A document could not be loaded or is invalid; carries every problem found at once."""

    def __init__(
        self, problems: Iterable[Problem], *, summary: str = "", hint: str | None = None
    ) -> None:
        self.problems = list(problems)
        lines = [p.render() for p in self.problems]
        head = summary or (
            f"{len(lines)} problem{'s' if len(lines) != 1 else ''} found" if len(lines) != 1 else ""
        )
        message = "\n".join(([head] if head else []) + lines)
        super().__init__(message, hint=hint)


class ParseError(DocumentError):
    """The input is not well-formed YAML (or PEM, base64 ...)."""


class ValidationError(DocumentError):
    """The input is well-formed but breaks a rule (unknown key, wrong type, bad CIDR ...)."""


class PKIError(TalosError):
    """Certificate or key material is malformed, mismatched or fails verification."""


class NetworkError(TalosError):
    """A node could not be reached or the call failed on the wire."""
