"""The HTTP server a qemu cluster runs on its gateway: the boot files, the installer bundle,
the nodes' configs and iPXE scripts, each at a fixed URL path.

    python -m talos_cluster.qemu.httpd --bind 10.5.0.1 --port PORT --map FILE

``FILE`` is a JSON object, URL path -> file, read again for every request (so another bundle
can be added for an upgrade); nothing else is served (no directory listing, no path is joined
with a request). Every request is logged on stderr (the cluster directory's ``http.log``).
SIGTERM stops it.
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any


def read_map(mapping: Path) -> dict[str, Path]:
    """The URL paths and their files; empty when the map cannot be read."""
    try:
        raw = json.loads(mapping.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(raw, dict):
        return {}
    return {str(k): Path(str(v)) for k, v in raw.items()}


def handler(mapping: Path) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def _file(self) -> Path | None:
            path = read_map(mapping).get(self.path.split("?", 1)[0])
            if path is None or not path.is_file():
                self.send_error(404)
                return None
            return path

        def _head(self, path: Path) -> int:
            size = path.stat().st_size
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(size))
            self.end_headers()
            return size

        def do_HEAD(self) -> None:
            path = self._file()
            if path is not None:
                self._head(path)

        def do_GET(self) -> None:
            path = self._file()
            if path is None:
                return
            with path.open("rb") as fh:
                self._head(path)
                try:
                    self.connection.sendfile(fh)
                except (BrokenPipeError, ConnectionResetError):
                    return

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - base's name
            sys.stderr.write(f"{self.client_address[0]} {format % args}\n")
            sys.stderr.flush()

    return Handler


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="talos_cluster.qemu.httpd")
    parser.add_argument("--bind", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--map", type=Path, required=True)
    args = parser.parse_args(argv)
    files = read_map(args.map)
    server = http.server.ThreadingHTTPServer((args.bind, args.port), handler(args.map))
    server.daemon_threads = True
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    sys.stderr.write(f"serving {len(files)} file(s) on http://{args.bind}:{args.port}\n")
    sys.stderr.flush()
    server.serve_forever()
    return 0  # pragma: no cover - serve_forever returns only on shutdown()


if __name__ == "__main__":
    sys.exit(main())
