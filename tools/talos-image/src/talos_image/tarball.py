"""Reproducible tar archives: members in the order given, mtime the build's epoch, owner and
group 0 with no names, ustar headers (no PAX times), gzip with no file name and mtime 0."""

from __future__ import annotations

import gzip
import tarfile
from collections.abc import Sequence
from pathlib import Path
from typing import IO


def write(out: Path, members: Sequence[tuple[str, Path]], *, epoch: int, compress: bool) -> Path:
    """Write ``members`` (name in the archive, file on disk) to ``out``; gzip with ``compress``."""
    tmp = out.with_name(f".{out.name}.tmp")
    with tmp.open("wb") as raw:
        if compress:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as gz:
                _tar(gz, members, epoch)
        else:
            _tar(raw, members, epoch)
    tmp.replace(out)
    return out


def _tar(
    fileobj: IO[bytes] | gzip.GzipFile, members: Sequence[tuple[str, Path]], epoch: int
) -> None:
    with tarfile.open(fileobj=fileobj, mode="w|", format=tarfile.USTAR_FORMAT) as tar:
        for name, path in members:
            info = tarfile.TarInfo(name)
            info.size = path.stat().st_size
            info.mtime = epoch
            info.mode = 0o644
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            with path.open("rb") as src:
                tar.addfile(info, src)
