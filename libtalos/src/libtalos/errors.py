"""One exception hierarchy and one exit-code table for every tool.

Each tool's ``main(argv)`` lets these propagate to :func:`libtalos.cli.run`, the one place that
turns an exception into a message on stderr and an exit code. Messages never contain secrets:
exceptions are built from key paths, file names and line numbers, never from values that may be
key material.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass


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


@dataclass(frozen=True)
class Problem:
    """One problem found in a document: where it is and what is wrong."""

    message: str
    path: str = ""  # dotted key path, e.g. "machine.network.interfaces[0].cidr"
    line: int | None = None  # 1-based line in the source
    source: str = ""  # file name or "<stdin>"
    document: int | None = None  # 1-based index of the document in a multi-document stream

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
