"""``list`` (``ls``), ``read``, ``copy`` (``cp``) and ``usage`` (``du``): the nodes' files.

Output as talosctl prints it (docs/talos-facts.md#file-rpcs): ``ls`` the relative names (with
the NODE column), ``ls -l`` NODE, MODE, SIZE(B), LASTMOD, NAME with Go's mode string and
``Jan _2 15:04:05`` times (``Jan _2 2006 15:04`` past six months), ``usage`` NODE, SIZE, NAME;
``-H`` sizes in SI units and times as "3 minutes ago". An entry the node could not read is
named on stderr and the listing goes on; a node that fails is reported at the end (exit 1).
``read`` and ``copy`` take one node; ``copy`` writes the node's gzip-compressed tar to stdout
(``-``) or unpacks it into a local directory, never outside it.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import sys
from pathlib import Path
from typing import IO, Annotated, Any

import typer

from libtalos.errors import TalosError, TalosIOError, UsageError
from talos_apply.options import Globals, global_options, globals_of
from talos_apply.output import table

_MODE_CHARS = "dalTLDpSugct?"  # Go's os.FileMode type letters, bit 31 down to 19
SIX_MONTHS = dt.timedelta(days=182)


def go_mode_string(mode: int) -> str:
    """Go's ``os.FileMode.String()``: type letters (or ``-``), then ``rwxrwxrwx``."""
    kinds = "".join(c for i, c in enumerate(_MODE_CHARS) if mode & (1 << (31 - i)))
    perms = "".join(c if mode & (1 << (8 - i)) else "-" for i, c in enumerate("rwxrwxrwx"))
    return (kinds or "-") + perms


def human_bytes(n: int) -> str:
    """go-humanize's ``Bytes``: SI units, ``4.1 kB``, ``12 MB``, ``7 B``."""
    if n < 10:
        return f"{n} B"
    units = ("B", "kB", "MB", "GB", "TB", "PB", "EB")
    e = min(math.floor(math.log(n, 1000)), len(units) - 1)
    value = math.floor(n / 1000**e * 10 + 0.5) / 10
    return f"{value:.1f} {units[e]}" if value < 10 else f"{value:.0f} {units[e]}"


def human_time(when: dt.datetime, now: dt.datetime) -> str:
    """go-humanize's ``Time``: how long ago (or from now), in the largest whole unit."""
    delta = (now - when).total_seconds()
    suffix = "ago" if delta >= 0 else "from now"
    delta = abs(delta)
    if delta < 1:
        return "now"
    for size, unit in (
        (365 * 86400, "year"),
        (30 * 86400, "month"),
        (7 * 86400, "week"),
        (86400, "day"),
        (3600, "hour"),
        (60, "minute"),
        (1, "second"),
    ):
        if delta >= size:
            count = int(delta // size)
            return f"{count} {unit}{'s' if count != 1 else ''} {suffix}"
    return "now"  # pragma: no cover


def last_modified(seconds: int, now: dt.datetime, humanize: bool) -> str:
    when = dt.datetime.fromtimestamp(seconds).astimezone()
    if humanize:
        return human_time(when, now)
    if now - when < SIX_MONTHS:
        return f"{when:%b} {when.day:>2} {when:%H:%M:%S}"
    return f"{when:%b} {when.day:>2} {when:%Y %H:%M}"


def _collect(g: Globals, method: str, request: Any) -> tuple[list[Any], list[Any]]:
    """Every frame of a streaming call: (entries, node errors)."""
    from libtalos.api.wire import NodeError
    from talos_apply import client

    c = client.Client(client.secure_target(g))
    frames: list[Any] = []
    errors: list[NodeError] = []

    async def pump() -> None:
        async for frame in c.stream(method, request):
            md = frame.metadata
            if md.error:
                errors.append(NodeError(md.hostname, md.error, md.status.code))
            else:
                frames.append(frame)

    client.run(pump())
    return frames, errors


def _entry_errors(frames: list[Any]) -> list[Any]:
    """The entries without an error; the others are named on stderr, as talosctl does."""
    kept = []
    for f in frames:
        if f.error:
            sys.stderr.write(f"{f.metadata.hostname}: error reading file {f.name}: {f.error}\n")
        else:
            kept.append(f)
    return kept


@global_options()
def list_files(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="The directory (or file) to list.")] = "/",
    long: Annotated[
        bool, typer.Option("--long", "-l", help="Display additional file details.")
    ] = False,
    recurse: Annotated[
        bool, typer.Option("--recurse", "-r", help="Recurse into subdirectories.")
    ] = False,
    depth: Annotated[
        int, typer.Option("--depth", "-d", help="Maximum recursion depth (0: no limit).")
    ] = 0,
    humanize: Annotated[
        bool, typer.Option("--humanize", "-H", help="Humanize size and time in the output.")
    ] = False,
    types: Annotated[
        list[str] | None,
        typer.Option(
            "--type", "-t", help="Only these types: f regular file, d directory, l symlink."
        ),
    ] = None,
) -> None:
    """Retrieve a directory listing."""
    from libtalos.api import machine_pb2
    from talos_apply.output import report_errors

    wanted = []
    for group in types or []:
        for letter in group.replace(",", ""):
            kind = {"f": "REGULAR", "d": "DIRECTORY", "l": "SYMLINK", "L": "SYMLINK"}.get(letter)
            if kind is None:
                raise UsageError(f"--type: invalid file type {letter!r} (f, d or l)")
            wanted.append(machine_pb2.ListRequest.Type.Value(kind))
    if not 0 <= depth < 2**31:
        raise UsageError("--depth: must be 0 (no limit) or more")
    request = machine_pb2.ListRequest(
        root=path,
        recurse=recurse,
        recursion_depth=depth,
        types=wanted,
    )
    frames, errors = _collect(globals_of(ctx), "List", request)
    entries = _entry_errors(frames)
    if not long:
        if any(e.metadata.hostname for e in entries):
            sys.stdout.write(
                table(["NODE", "NAME"], [[e.metadata.hostname, e.relative_name] for e in entries])
            )
        else:
            sys.stdout.writelines(f"{e.relative_name}\n" for e in entries)
    else:
        now = dt.datetime.now().astimezone()
        rows = [
            [
                e.metadata.hostname,
                go_mode_string(e.mode),
                human_bytes(e.size) if humanize else str(e.size),
                last_modified(e.modified, now, humanize),
                e.relative_name + (f" -> {e.link}" if e.link else ""),
            ]
            for e in entries
        ]
        sys.stdout.write(table(["NODE", "MODE", "SIZE(B)", "LASTMOD", "NAME"], rows))
    report_errors(errors)


@global_options()
def usage(
    ctx: typer.Context,
    paths: Annotated[
        list[str] | None, typer.Argument(help="The paths to measure (default /).")
    ] = None,
    all_files: Annotated[
        bool, typer.Option("--all", "-a", help="Write counts for all files, not just directories.")
    ] = False,
    depth: Annotated[int, typer.Option("--depth", "-d", help="Maximum recursion depth.")] = 0,
    humanize: Annotated[
        bool, typer.Option("--humanize", "-H", help="Humanize size and time in the output.")
    ] = False,
    threshold: Annotated[
        int,
        typer.Option(
            "--threshold",
            "-t",
            help="Exclude entries smaller than SIZE if positive, or greater than -SIZE if "
            "negative.",
        ),
    ] = 0,
) -> None:
    """Retrieve a disk usage."""
    from libtalos.api import machine_pb2
    from talos_apply.output import report_errors

    if not 0 <= depth < 2**31:
        raise UsageError("--depth: must be 0 (no limit) or more")
    request = machine_pb2.DiskUsageRequest(
        recursion_depth=depth, all=all_files, threshold=threshold, paths=paths or ["/"]
    )
    frames, errors = _collect(globals_of(ctx), "DiskUsage", request)
    entries = _entry_errors(frames)
    size = human_bytes if humanize else str
    if any(e.metadata.hostname for e in entries):
        rows = [[e.metadata.hostname, size(e.size), e.relative_name] for e in entries]
        sys.stdout.write(table(["NODE", "SIZE", "NAME"], rows))
    elif entries:
        sys.stdout.write(
            table(["SIZE", "NAME"], [[size(e.size), e.relative_name] for e in entries])
        )
    report_errors(errors)


def _one_node(g: Globals, command: str) -> Globals:
    from talos_apply import client

    target = client.secure_target(g)
    if len(target.nodes) != 1:
        raise UsageError(f"{command} takes exactly one node (--nodes IP)")
    return g


def stream_bytes(g: Globals, method: str, request: Any, sink: IO[bytes]) -> list[str]:
    """Write a streaming call's data frames to ``sink``; returns the errors it reported."""
    from talos_apply import client

    c = client.Client(client.secure_target(g))
    errors: list[str] = []

    async def pump() -> None:
        async for frame in c.stream(method, request):
            if frame.metadata.error:
                errors.append(frame.metadata.error)
            elif frame.bytes:
                sink.write(frame.bytes)

    client.run(pump())
    sink.flush()
    return errors


@global_options()
def read(
    ctx: typer.Context,
    path: Annotated[str, typer.Argument(help="The file to read.")],
) -> None:
    """Read a file on the machine."""
    from libtalos.api import machine_pb2
    from talos_apply.output import NodesFailedError

    g = _one_node(globals_of(ctx), "read")
    errors = stream_bytes(g, "Read", machine_pb2.ReadRequest(path=path), sys.stdout.buffer)
    for e in errors:
        sys.stderr.write(f"error: {e}\n")
    if errors:
        raise NodesFailedError("the node failed")


@global_options()
def copy(
    ctx: typer.Context,
    src: Annotated[str, typer.Argument(metavar="SRC-PATH", help="The node's path to copy.")],
    dest: Annotated[
        str, typer.Argument(metavar="-|LOCAL-PATH", help="- for stdout (.tar.gz), or a directory.")
    ],
) -> None:
    """Copy data out from the node: a .tar.gz of SRC-PATH to stdout (-) or unpacked into a
    local directory (created when missing; ownership and modes are not kept)."""
    import tempfile

    from libtalos.api import machine_pb2
    from talos_apply.output import NodesFailedError

    g = _one_node(globals_of(ctx), "copy")
    request = machine_pb2.CopyRequest(root_path=src)

    def report(errors: list[str]) -> None:
        # the node names what it left out ("skipping ...") in its last frame; anything else
        # is the node failing
        for e in errors:
            sys.stderr.write(f"{e}\n")
        if any(not e.startswith("skipping ") for e in errors):
            raise NodesFailedError("the node failed")

    if dest == "-":
        report(stream_bytes(g, "Copy", request, sys.stdout.buffer))
        return
    target = Path(dest)
    if target.exists() and not target.is_dir():
        raise UsageError(f"local path {dest!r} should be a directory")
    try:
        target.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TalosIOError(f"{dest}: cannot create: {exc.strerror}") from None
    with tempfile.TemporaryFile() as spool:
        report(stream_bytes(g, "Copy", request, spool))
        spool.seek(0)
        extract(spool, target)


def extract(archive: IO[bytes], dest: Path) -> None:
    """Unpack a .tar.gz into ``dest``: directories, regular files and symlinks; a member whose
    path would leave ``dest`` (absolute, ``..``, or through a symlink) is refused."""
    import tarfile

    base = os.path.realpath(dest)
    try:
        with tarfile.open(fileobj=archive, mode="r:gz") as tar:
            for member in tar:
                name = member.name.lstrip("/")
                parts = [p for p in name.split("/") if p not in ("", ".")]
                if ".." in parts:
                    raise TalosError(f"archive member {member.name!r} leaves the directory")
                if not parts:
                    continue
                path = os.path.join(base, *parts)
                parent = os.path.realpath(os.path.dirname(path))
                if parent != base and not parent.startswith(base + os.sep):
                    raise TalosError(f"archive member {member.name!r} leaves the directory")
                if member.isdir():
                    os.makedirs(path, exist_ok=True)
                elif member.issym():
                    if os.path.lexists(path):
                        os.unlink(path)
                    os.symlink(member.linkname, path)
                elif member.isreg():
                    source = tar.extractfile(member)
                    assert source is not None  # noqa: S101 - a regular member has data
                    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
                    fd = os.open(path, flags, 0o644)
                    with os.fdopen(fd, "wb") as out:
                        while chunk := source.read(1 << 16):
                            out.write(chunk)
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise TalosIOError(f"{dest}: cannot unpack the archive: {exc}") from None
