"""Tool start-up against the bare interpreter (`python -c pass`), measured interleaved."""

from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path

from common import BIN, PYTHON, interleaved, row

TOOLS = [
    "talosctl",
    "talos-gen",
    "talos-pki",
    "talos-apply",
    "talos-vip",
    "talos-luks",
    "talos-init",
]


def main() -> None:
    print("== start-up (median of 21, interleaved)")
    commands: dict[str, list[str]] = {"python -c pass": [PYTHON, "-c", "pass"]}
    for tool in TOOLS:
        argv = [str(BIN / tool), "--version"]
        if (BIN / tool).exists() and subprocess.run(argv, capture_output=True).returncode == 0:
            commands[f"{tool} --version"] = argv
    with tempfile.TemporaryDirectory() as tmp:
        from libtalos import pki

        cert = Path(tmp) / "ca.crt"
        cert.write_bytes(pki.generate_secrets().talos_ca.crt)
        commands["talos-pki fingerprint CERT"] = [str(BIN / "talos-pki"), "fingerprint", str(cert)]
        commands["talos-gen --help"] = [str(BIN / "talos-gen"), "--help"]
        times = interleaved(commands)
    base = times.pop("python -c pass")
    row("python -c pass", base)
    for name, value in times.items():
        goal = "<= 5x" if "fingerprint" in name else ("<= 3x" if "--version" in name else "")
        row(name, value, "python", base, goal)


if __name__ == "__main__":
    main()
