"""Run a command inside the current (private) network namespace next to an HTTP server.

    serve_then_exec.py FILE -- COMMAND...

Brings lo up, serves FILE at http://127.0.0.1:PORT/config.yaml (the literal {PORT} in COMMAND
is replaced), runs COMMAND and exits with its status. Meant to run under `unshare --net`.
"""

import fcntl
import http.server
import socket
import struct
import subprocess
import sys
import threading
from pathlib import Path


def loopback_up() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        flags = struct.unpack("16sH14x", fcntl.ioctl(s, 0x8913, struct.pack("16sH14x", b"lo", 0)))[
            1
        ]
        fcntl.ioctl(s, 0x8914, struct.pack("16sH14x", b"lo", flags | 1))


def main() -> int:
    body = Path(sys.argv[1]).read_bytes()
    command = sys.argv[sys.argv.index("--") + 1 :]
    loopback_up()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path.split("?")[0] != "/config.yaml":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            sys.stderr.write(f"http: {self.path}\n")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    port = str(server.server_address[1])
    return subprocess.run([a.replace("{PORT}", port) for a in command]).returncode


if __name__ == "__main__":
    sys.exit(main())
