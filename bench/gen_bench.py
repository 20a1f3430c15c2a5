"""`talos-gen config` end to end and `talos-pki secrets`, as a user runs them."""

from __future__ import annotations

import tempfile
from pathlib import Path

from common import BIN, PYTHON, interleaved, row


def main() -> None:
    print("== generation (median of 21, interleaved)")
    with tempfile.TemporaryDirectory() as tmp:
        secrets = Path(tmp) / "secrets.yaml"
        out = Path(tmp) / "out"
        commands = {
            "python -c pass": [PYTHON, "-c", "pass"],
            "talos-pki secrets": [str(BIN / "talos-pki"), "secrets", "-o", "-"],
            "talos-gen config (new secrets)": [
                str(BIN / "talos-gen"),
                "config",
                "demo",
                "https://10.5.0.2:6443",
                "-o",
                str(out),
                "--force",
            ],
        }
        import subprocess

        subprocess.run([str(BIN / "talos-pki"), "secrets", "-o", str(secrets)], check=True)
        commands["talos-gen config --with-secrets"] = [
            str(BIN / "talos-gen"),
            "config",
            "demo",
            "https://10.5.0.2:6443",
            "--with-secrets",
            str(secrets),
            "-o",
            str(out),
            "--force",
        ]
        times = interleaved(commands)
    base = times.pop("python -c pass")
    row("python -c pass", base)
    row("talos-pki secrets", times["talos-pki secrets"], "python", base, "< 100 ms")
    row(
        "talos-gen config (new secrets)",
        times["talos-gen config (new secrets)"],
        "python",
        base,
        "< 150 ms",
    )
    row(
        "talos-gen config --with-secrets",
        times["talos-gen config --with-secrets"],
        "python",
        base,
        "< 150 ms",
    )


if __name__ == "__main__":
    main()
