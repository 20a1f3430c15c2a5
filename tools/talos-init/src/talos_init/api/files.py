"""The node's files as the machine API serves them: ``List``, ``Read``, ``Copy``, ``DiskUsage``
and ``Mounts`` (docs/talos-facts.md#file-rpcs).

Every path names a place in the node's own root (:class:`FileAccess`: ``/`` of a container node
that built its root, or of a metal node). A path is checked before anything is opened: absolute
(a relative one is taken from ``/``, as Talos does), at most :data:`MAX_PATH` characters, no NUL
and no ``..`` (:func:`check_path`). It is then resolved one component at a time from a
descriptor of the root (:class:`Root`): each directory is opened with ``O_NOFOLLOW`` relative to
the one before, and a symlink met on the way is read and followed by hand, an absolute target
from the root, a relative one from where it stands, so a link can lead anywhere inside the root
but a ``..`` past the root is refused. Nothing is resolved twice by name, so a path swapped for a
symlink between the check and the use is refused, not followed.

The walks and reads are blocking; they run as generators resumed in a worker thread
(:func:`pull`), a batch at a time, so that the event loop keeps serving. A caller that goes
away cancels the handler between batches, and the generator is then closed (its descriptors with
it) as soon as the batch in the worker is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import stat
import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from talos_init.api.node import NodeCallError, Status

MAX_PATH = 4096  # characters of a path in a request (Linux's PATH_MAX)
MAX_PATHS = 64  # paths in one DiskUsage request
MAX_LINKS = 40  # symlinks followed while resolving one path (Linux's limit)
MAX_DEPTH = 256  # directory levels a walk descends (one descriptor each)
CHUNK = 64 * 1024  # bytes of file data in one common.Data frame
BATCH = 256  # walk entries pulled from the worker at a time
CONFIG_PATH = "/system/state/config.yaml"  # the node's machine config (configsource.CONFIG_NAME)

_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
T = TypeVar("T")


@dataclass(frozen=True)
class FileAccess:
    """What the file methods need of a node: its root directory (``/`` in the node's own mount
    namespace), its log (a read of the machine config is written there), and the top-level
    directories of that root that are not the node's own (``shared``).

    A container node's root holds the host's software as read-only bind mounts (``/usr``,
    ``/etc``, ``/dev``, ...: talos_init.mounts.build_node_root); its own files are only
    ``/system``, ``/var``, ``/run``, ``/tmp`` and its ``/proc``. The shared directories are
    listed by name in ``/`` but never entered, read or copied: the methods serve the node's
    files, not the host's. A metal node owns all of its root (``shared`` is empty)."""

    root: str
    log: Callable[[str], None]
    shared: frozenset[str] = frozenset()


class SharedError(OSError):
    """A path leads into a directory the node shares with the host (see :class:`FileAccess`)."""


class EscapeError(OSError):
    """A symlink leads out of the node's root."""


def _shown(path: str) -> str:
    return repr(path if len(path) <= 120 else path[:120] + "...")


def check_path(path: str, what: str = "path") -> list[str]:
    """``path``'s components below the root; NodeCallError INVALID_ARGUMENT when it is not
    a path this node serves."""
    if "\0" in path:
        raise NodeCallError(Status.INVALID_ARGUMENT, f"{what} {_shown(path)} contains a NUL byte")
    if len(path) > MAX_PATH:
        raise NodeCallError(
            Status.INVALID_ARGUMENT,
            f"{what} is {len(path)} characters long; the limit is {MAX_PATH}",
        )
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise NodeCallError(
            Status.INVALID_ARGUMENT,
            f"{what} {_shown(path)}: '..' is not allowed (paths stay inside the node's root)",
        )
    return parts


def node_path(parts: list[str]) -> str:
    return "/" + "/".join(parts)


def display(name: str) -> str:
    """A file name as UTF-8 text (bytes that do not decode are replaced)."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def go_mode(st_mode: int) -> int:
    """``st_mode`` as Go's ``os.FileMode`` bits (what ``FileInfo.mode`` carries)."""
    mode = st_mode & 0o777
    kind = stat.S_IFMT(st_mode)
    mode |= {
        stat.S_IFDIR: 1 << 31,
        stat.S_IFLNK: 1 << 27,
        stat.S_IFBLK: 1 << 26,
        stat.S_IFCHR: 1 << 26 | 1 << 21,
        stat.S_IFIFO: 1 << 25,
        stat.S_IFSOCK: 1 << 24,
    }.get(kind, 0)
    if st_mode & stat.S_ISUID:
        mode |= 1 << 23
    if st_mode & stat.S_ISGID:
        mode |= 1 << 22
    if st_mode & stat.S_ISVTX:
        mode |= 1 << 20
    return mode


def os_error(exc: OSError, where: str) -> NodeCallError:
    """An OSError on ``where`` as the call's error."""
    if isinstance(exc, EscapeError):
        return NodeCallError(Status.INVALID_ARGUMENT, f"{where}: {exc.strerror}")
    if isinstance(exc, SharedError):
        return NodeCallError(Status.PERMISSION_DENIED, f"{where}: {exc.strerror}")
    status = {
        errno.ENOENT: Status.NOT_FOUND,
        errno.ENOTDIR: Status.NOT_FOUND,
        errno.ELOOP: Status.INVALID_ARGUMENT,
        errno.EACCES: Status.FAILED_PRECONDITION,
        errno.EPERM: Status.FAILED_PRECONDITION,
    }.get(exc.errno or 0, Status.INTERNAL)
    return NodeCallError(status, f"{where}: {exc.strerror or type(exc).__name__}")


@dataclass(frozen=True)
class Resolved:
    """A path resolved below the root: the directory holding it (an open descriptor, the
    caller closes it with :meth:`close`), its name there, its canonical node path, its lstat."""

    parent: int
    name: str
    path: str
    stat: os.stat_result
    owned: bool  # parent is ours to close (not the root's descriptor)

    def close(self) -> None:
        if self.owned:
            os.close(self.parent)


class Root:
    """The node's root directory, held open; paths resolve below it (see the module)."""

    def __init__(self, root: str, shared: frozenset[str] = frozenset()) -> None:
        self.fd = os.open(root, _DIR_FLAGS & ~os.O_NOFOLLOW)
        self.shared = shared

    def check_shared(self, name: str) -> None:
        """SharedError when ``name``, a directory in the root, is one shared with the host."""
        if name in self.shared:
            raise SharedError(
                errno.EACCES,
                f"/{name} is the host's, shared read-only with this container node, not served",
            )

    def close(self) -> None:
        os.close(self.fd)

    def __enter__(self) -> Root:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def resolve(self, parts: list[str], *, follow: bool) -> Resolved:
        """Resolve ``parts``; the last component's symlink is followed only with ``follow``.
        OSError when a component is missing, not a directory, or leads out (EscapeError)."""
        stack: list[int] = []  # descriptors of the directories below the root, in order
        names: list[str] = []
        todo = list(parts)
        links = 0
        try:
            while True:
                if not todo:
                    return self._here(stack, names)
                comp = todo.pop(0)
                if comp == "..":
                    if not stack:
                        raise EscapeError(errno.EXDEV, "a symlink leads outside the node's root")
                    os.close(stack.pop())
                    names.pop()
                    continue
                cur = stack[-1] if stack else self.fd
                if not stack:
                    self.check_shared(comp)
                st = os.stat(comp, dir_fd=cur, follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode) and (todo or follow):
                    links += 1
                    if links > MAX_LINKS:
                        raise OSError(errno.ELOOP, "too many levels of symbolic links")
                    target = os.readlink(comp, dir_fd=cur)
                    if target.startswith("/"):
                        while stack:
                            os.close(stack.pop())
                        names.clear()
                    todo = [p for p in target.split("/") if p not in ("", ".")] + todo
                    continue
                if not todo:
                    if stack:
                        stack.pop()  # handed to the caller
                    return Resolved(cur, comp, node_path([*names, comp]), st, cur != self.fd)
                if not stat.S_ISDIR(st.st_mode):
                    raise OSError(errno.ENOTDIR, "not a directory")
                stack.append(os.open(comp, _DIR_FLAGS, dir_fd=cur))
                names.append(comp)
        finally:
            for fd in stack:
                os.close(fd)

    def _here(self, stack: list[int], names: list[str]) -> Resolved:
        """The directory the resolution stands in (after a link to ``.``, ``..``, ``/``)."""
        if not names:
            return Resolved(self.fd, ".", "/", os.stat(self.fd), owned=False)
        os.close(stack.pop())
        parent = stack.pop() if stack else self.fd
        st = os.stat(names[-1], dir_fd=parent, follow_symlinks=False)
        return Resolved(parent, names[-1], node_path(names), st, parent != self.fd)

    def open_file(self, found: Resolved) -> int:
        """A regular file resolved by :meth:`resolve`, opened for reading."""
        if found.name == ".":
            raise OSError(errno.EISDIR, "is a directory")
        return open_regular(found.name, found.parent)

    def open_dir(self, found: Resolved) -> int:
        if found.name == ".":
            return os.dup(self.fd)
        return os.open(found.name, _DIR_FLAGS, dir_fd=found.parent)


def open_regular(name: str, dir_fd: int) -> int:
    """``name`` in ``dir_fd`` opened for reading if it is (still) a regular file: never through
    a symlink, and without blocking on a FIFO put in its place since it was looked at."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
    fd = os.open(name, flags, dir_fd=dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(errno.EINVAL, "not a regular file")
    return fd


# ---------------------------------------------------------------- walking


@dataclass(frozen=True)
class Entry:
    """One walk step: an entry (``st`` set, or ``error``), or the end of a directory
    (``end``: its sizes are complete)."""

    path: str
    rel: str
    depth: int
    st: os.stat_result | None = None
    link: str = ""
    error: str = ""
    end: bool = False
    dir_fd: int = -1  # an entry's directory (valid until the walk moves on)
    name: str = ""


def _join(base: str, name: str) -> str:
    return f"{base.rstrip('/')}/{name}"


def walk(root: Root, parts: list[str], max_depth: int, *, ends: bool = False) -> Iterator[Entry]:
    """The entries below ``parts`` (followed if a symlink), depth first in name order, the
    top first (relative name ``.``; a file alone: its base name). A directory at depth ``d``
    (the top is 0) is entered when ``max_depth < 0`` or ``d < max_depth``; the top always.
    Raises OSError when the top cannot be resolved."""
    top = root.resolve(parts, follow=True)
    stack: list[tuple[int, str, str, int, Iterator[str]]] = []
    try:
        is_dir = stat.S_ISDIR(top.stat.st_mode)
        rel = "." if is_dir else display(top.name)
        yield Entry(top.path, rel, 0, top.stat, dir_fd=top.parent, name=top.name)
        if not is_dir:
            return
        fd = root.open_dir(top)
        try:
            names = sorted(os.listdir(fd))
        except OSError as exc:
            os.close(fd)
            yield Entry(top.path, ".", 0, error=exc.strerror or str(exc))
            return
        stack.append((fd, top.path, "", 0, iter(names)))
        while stack:
            fd, path, rel, depth, names_left = stack[-1]
            name = next(names_left, None)
            if name is None:
                stack.pop()
                os.close(fd)
                if ends:
                    yield Entry(path, rel or ".", depth, end=True)
                continue
            child, child_rel, d = _join(path, display(name)), _join(rel, display(name)), depth + 1
            child_rel = child_rel.lstrip("/")
            try:
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                link = os.readlink(name, dir_fd=fd) if stat.S_ISLNK(st.st_mode) else ""
            except OSError as exc:
                yield Entry(child, child_rel, d, error=exc.strerror or str(exc))
                continue
            yield Entry(child, child_rel, d, st, display(link), dir_fd=fd, name=name)
            if not stat.S_ISDIR(st.st_mode) or not (max_depth < 0 or d < max_depth):
                continue
            if path == "/" and name in root.shared:
                continue  # listed by name, never entered (FileAccess)
            if len(stack) >= MAX_DEPTH:
                yield Entry(child, child_rel, d, error="too many directory levels")
                continue
            try:
                sub = os.open(name, _DIR_FLAGS, dir_fd=fd)
            except OSError as exc:
                yield Entry(child, child_rel, d, error=exc.strerror or str(exc))
                continue
            try:
                sub_names = sorted(os.listdir(sub))
            except OSError as exc:
                os.close(sub)
                yield Entry(child, child_rel, d, error=exc.strerror or str(exc))
                continue
            stack.append((sub, child, child_rel, d, iter(sub_names)))
    finally:
        for fd, *_ in stack:
            os.close(fd)
        top.close()


# ---------------------------------------------------------------- the methods' generators


def list_entries(
    access: FileAccess, root_path: str, recurse: bool, depth: int, types: set[int]
) -> Iterator[dict[str, Any]]:
    """``List``: FileInfo fields for each entry. ``types``: ListRequest.Type values to keep
    (empty: all); directories are entered whether or not they are kept."""
    parts = check_path(root_path or "/", "root")
    max_depth = (-1 if depth == 0 else depth) if recurse else 0
    with Root(access.root, access.shared) as root:
        try:
            entries = walk(root, parts, max_depth)
            first = next(entries)
        except OSError as exc:
            raise os_error(exc, f"list {_shown(node_path(parts))}") from None
        for e in _chain(first, entries):
            if e.error:
                yield {"name": e.path, "relative_name": e.rel, "error": e.error}
                continue
            assert e.st is not None  # noqa: S101 - an entry without an error has its stat
            if types and _type_of(e.st.st_mode) not in types:
                continue
            yield {
                "name": e.path,
                "relative_name": e.rel,
                "size": e.st.st_size,
                "mode": go_mode(e.st.st_mode),
                "modified": int(e.st.st_mtime),
                "is_dir": stat.S_ISDIR(e.st.st_mode),
                "link": e.link,
            }


def _chain(first: Entry, rest: Iterator[Entry]) -> Iterator[Entry]:
    yield first
    yield from rest


def _type_of(st_mode: int) -> int:
    """ListRequest.Type of a mode: REGULAR 0, DIRECTORY 1, SYMLINK 2, other -1."""
    if stat.S_ISREG(st_mode):
        return 0
    if stat.S_ISDIR(st_mode):
        return 1
    if stat.S_ISLNK(st_mode):
        return 2
    return -1


def disk_usage(
    access: FileAccess, paths: list[str], depth: int, all_files: bool, threshold: int
) -> Iterator[dict[str, Any]]:
    """``DiskUsage``: DiskUsageInfo fields. Sizes are apparent sizes (``st_size``); a
    directory's is its own plus everything below it, reported after its contents. An entry is
    left out when its depth is ``depth`` or more (``depth`` > 0), when it is a file and not
    ``all_files``, or when it is smaller than ``threshold`` (> 0) or larger than
    ``-threshold`` (< 0)."""
    if len(paths) > MAX_PATHS:
        raise NodeCallError(
            Status.INVALID_ARGUMENT, f"paths: {len(paths)} given; the limit is {MAX_PATHS}"
        )
    checked = [(p or "/", check_path(p or "/", "path")) for p in paths or ["/"]]

    def kept(d: int, is_dir: bool, size: int) -> bool:
        if depth > 0 and d >= depth:
            return False
        if not is_dir and not all_files:
            return False
        return not ((threshold > 0 and size < threshold) or (threshold < 0 and size > -threshold))

    with Root(access.root, access.shared) as root:
        for given, parts in checked:
            folders: list[list[Any]] = []  # [path, rel, depth, size]
            try:
                for e in walk(root, parts, -1, ends=True):
                    if e.error:
                        yield {"name": e.path, "relative_name": e.rel, "error": e.error}
                        continue
                    if e.end:
                        path, rel, d, size = folders.pop()
                        if folders:
                            folders[-1][3] += size
                        if kept(d, True, size):
                            yield {"name": path, "relative_name": rel, "size": size}
                        continue
                    assert e.st is not None  # noqa: S101
                    size = max(0, e.st.st_size)
                    if e.path == "/proc/kcore":
                        size = 0  # the kernel reports the address space's size
                    if stat.S_ISDIR(e.st.st_mode):
                        folders.append([e.path, e.rel, e.depth, size])
                        continue
                    if folders:
                        folders[-1][3] += size
                    if kept(e.depth, False, size):
                        yield {"name": e.path, "relative_name": e.rel, "size": size}
            except OSError as exc:
                where = node_path(parts)
                yield {"name": where, "relative_name": given, "error": exc.strerror or str(exc)}


def read_chunks(access: FileAccess, path: str, who: str) -> Iterator[bytes]:
    """``Read``: a regular file's bytes in chunks of :data:`CHUNK` (symlinks followed)."""
    parts = check_path(path, "path")
    with Root(access.root, access.shared) as root:
        try:
            found = root.resolve(parts, follow=True)
        except OSError as exc:
            raise os_error(exc, f"read {_shown(node_path(parts))}") from None
        try:
            if not stat.S_ISREG(found.stat.st_mode):
                raise NodeCallError(
                    Status.FAILED_PRECONDITION, f"read {_shown(found.path)}: not a regular file"
                )
            try:
                fd = root.open_file(found)
            except OSError as exc:
                raise os_error(exc, f"read {_shown(found.path)}") from None
        finally:
            found.close()
        if found.path == CONFIG_PATH:
            access.log(f"read of {CONFIG_PATH} by {who}")
        try:
            while chunk := os.read(fd, CHUNK):
                yield chunk
        finally:
            os.close(fd)


def tar_chunks(access: FileAccess, path: str, errors: list[str]) -> Iterator[bytes]:
    """``Copy``: a gzip-compressed tar of ``path`` (a directory and everything below it, or one
    file), in compressed chunks of about :data:`CHUNK`. Entries that cannot be archived are
    skipped and named in ``errors``. Regular files, directories and symlinks are archived; a
    file's data is as long as its size when its header was written (zero-filled if it shrank
    since)."""
    import tarfile

    if not path.startswith("/"):
        raise NodeCallError(Status.INVALID_ARGUMENT, f"path {_shown(path)} is not absolute")
    parts = check_path(path, "path")
    gz = zlib.compressobj(6, zlib.DEFLATED, 31)  # gzip framing
    out = bytearray()

    def emit(data: bytes) -> Iterator[bytes]:
        out.extend(gz.compress(data))
        if len(out) >= CHUNK:
            yield bytes(out)
            out.clear()

    with Root(access.root, access.shared) as root:
        try:
            entries = walk(root, parts, -1)
            first = next(entries)
        except OSError as exc:
            raise os_error(exc, f"copy {_shown(node_path(parts))}") from None
        for e in _chain(first, entries):
            if e.error:
                errors.append(f"skipping {e.path!r}: {e.error}")
                continue
            assert e.st is not None  # noqa: S101
            st = e.st
            info = tarfile.TarInfo(e.rel + ("/" if stat.S_ISDIR(st.st_mode) else ""))
            info.mode = st.st_mode & 0o7777
            info.uid, info.gid = st.st_uid, st.st_gid
            info.mtime = int(st.st_mtime)
            fd = -1
            if stat.S_ISDIR(st.st_mode):
                info.type = tarfile.DIRTYPE
            elif stat.S_ISLNK(st.st_mode):
                info.type, info.linkname = tarfile.SYMTYPE, e.link
            elif stat.S_ISREG(st.st_mode):
                info.size = st.st_size
                if st.st_size:
                    try:
                        fd = open_regular(e.name, e.dir_fd)
                    except OSError as exc:
                        errors.append(f"skipping {e.path!r}: {exc.strerror}")
                        continue
            else:
                errors.append(f"skipping {e.path!r}: not a regular file, directory or symlink")
                continue
            try:
                yield from emit(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
                left = info.size
                while fd >= 0 and left > 0:
                    data = os.read(fd, min(CHUNK, left)) or b"\0" * min(CHUNK, left)
                    left -= len(data)
                    yield from emit(data)
                pad = -info.size % tarfile.BLOCKSIZE
                if pad:
                    yield from emit(b"\0" * pad)
            finally:
                if fd >= 0:
                    os.close(fd)
        yield from emit(b"\0" * (2 * tarfile.BLOCKSIZE))
    out.extend(gz.flush())
    if out:
        yield bytes(out)


@dataclass(frozen=True)
class MountInfo:
    filesystem: str
    size: int
    available: int
    mounted_on: str


def mounts(access: FileAccess) -> list[MountInfo]:
    """``Mounts``: each mount of the node's mount namespace that is a directory, with its
    size and the space available to unprivileged users (statvfs)."""
    with open(os.path.join(access.root, "proc/self/mounts"), encoding="utf-8") as fh:
        lines = fh.read().splitlines()
    out = []
    for line in lines:
        fields = line.split()
        if len(fields) < 2:
            continue
        where = _unescape_mount(fields[1])
        local = os.path.join(access.root, where.lstrip("/"))
        try:
            if not stat.S_ISDIR(os.stat(local).st_mode):
                continue
            vfs = os.statvfs(local)
        except OSError:
            continue
        out.append(
            MountInfo(
                _unescape_mount(fields[0]),
                vfs.f_frsize * vfs.f_blocks,
                vfs.f_frsize * vfs.f_bavail,
                where,
            )
        )
    return out


def _unescape_mount(field: str) -> str:
    r"""/proc/self/mounts writes space, tab, newline and backslash as ``\ooo``."""
    if "\\" not in field:
        return field
    return field.encode().decode("unicode_escape").encode("latin-1").decode("utf-8", "replace")


# ---------------------------------------------------------------- off the event loop


def _next_batch(gen: Iterator[T], size: int) -> tuple[list[T], bool]:
    items: list[T] = []
    for item in gen:
        items.append(item)
        if len(items) >= size:
            return items, False
    return items, True


async def pull(gen: Iterator[T], batch: int = BATCH) -> AsyncIterator[T]:
    """``gen``'s items, resumed in a worker thread ``batch`` items at a time. When the caller
    stops (or is cancelled), ``gen`` is closed once its batch in the worker is done."""
    loop = asyncio.get_running_loop()
    running: asyncio.Future[tuple[list[T], bool]] | None = None
    try:
        while True:
            running = loop.run_in_executor(None, _next_batch, gen, batch)
            items, done = await asyncio.shield(running)
            running = None
            for item in items:
                yield item
            if done:
                return
    finally:
        if running is not None and not running.done():
            running.add_done_callback(lambda _: _close(gen))
        else:
            _close(gen)


def _close(gen: Iterator[Any]) -> None:
    close = getattr(gen, "close", None)
    if close is not None:
        with contextlib.suppress(Exception):
            close()
