"""PID 1 of the LUKS mapping VM (run by test_vm_mapping.py through vmlib; not a pytest module).

Reads ``job.json`` from the vmlib share, runs every mapping check in one boot and writes
``result.json`` beside it. Any failed step raises: the guest then exits 1 with a traceback on
the console. Key material comes from files in the share, never from argv.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

T0 = time.monotonic()

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from vmlib import GUEST_SHARE, guest  # noqa: E402 - needs the path above

SHARE = Path(GUEST_SHARE)
MNT = "/tmp/mnt"


def luks_code(*argv: str) -> tuple[int, str]:
    """talos-luks in-process (a new interpreter per call costs seconds under TCG)."""
    from talos_luks.cli import main

    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = main(list(argv))
    return code, out.getvalue()


def luks(*argv: str) -> str:
    code, out = luks_code(*argv)
    if code != 0:
        raise RuntimeError(f"talos-luks {argv[0]} exited {code}")
    return out


def luks_script(*argv: str, stdin: bytes) -> str:
    """talos-luks through its installed console script, ``stdin`` piped in."""
    exe = str(Path(sys.executable).parent / "talos-luks")
    proc = subprocess.run([exe, *argv], input=stdin, capture_output=True, check=False)
    sys.stdout.write(proc.stderr.decode())
    if proc.returncode != 0:
        raise RuntimeError(f"talos-luks {argv[0]} exited {proc.returncode}")
    return proc.stdout.decode()


def mark(what: str) -> None:
    print(f"vm_guest: {time.monotonic() - T0:6.2f}s {what}", flush=True)


def sh(*argv: str, stdin: bytes | None = None) -> None:
    subprocess.run(argv, input=stdin, check=True, stdout=subprocess.DEVNULL)


def write_and_check(dev: str, fs: str, payload: bytes) -> None:
    os.makedirs(MNT, exist_ok=True)
    sh("mount", "-t", fs, dev, MNT)
    Path(MNT, "payload").write_bytes(payload)
    os.sync()
    sh("umount", MNT)


def read_back(dev: str, fs: str) -> bytes:
    sh("mount", "-t", fs, dev, MNT)
    data = Path(MNT, "payload").read_bytes()
    sh("umount", MNT)
    return data


def run() -> int:
    job = json.loads((SHARE / "job.json").read_text())
    fast: list[str] = job["fast"]
    marker = bytes.fromhex(job["marker"])
    payload = marker * ((1 << 20) // len(marker))
    result: dict[str, object] = {}
    guest.modprobe("virtio_blk", "dm_crypt", "xfs", "ext4")
    mark("modules loaded")
    key = str(SHARE / "key")

    # 1. formatted by talos-luks, xfs; reopened by talos-luks and by the cryptsetup CLI
    dev = guest.disk("ours")
    luks("format", dev, "--key-file", key, *fast)
    path = luks("open", dev, "ours", "--key-file", key).strip()
    result["ours_path"] = path
    result["ours_status"] = luks("status", "ours")
    result["busy_exit"] = luks_code("open", dev, "ours", "--key-file", key)[0]
    mark("opened")
    sh("mkfs.xfs", "-q", path)
    mark("mkfs.xfs done")
    write_and_check(path, "xfs", payload)
    luks("close", "ours")
    result["ours_closed"] = not Path(path).exists()
    # an inactive name, with device-mapper present: both tools' exit codes (cryptsetup's table)
    result["inactive_exits"] = {
        "status": luks_code("status", "ours")[0],
        "close": luks_code("close", "ours")[0],
        "cryptsetup status": subprocess.run(
            ["cryptsetup", "status", "ours"], check=False, stdout=subprocess.DEVNULL
        ).returncode,
        "cryptsetup close": subprocess.run(
            ["cryptsetup", "close", "ours"], check=False, stderr=subprocess.DEVNULL
        ).returncode,
    }
    path = luks("open", dev, "ours", "--key-file", key).strip()
    result["ours_readback"] = read_back(path, "xfs") == payload
    luks("close", "ours")
    sh("cryptsetup", "open", "--key-file", key, dev, "ours-cs")
    result["ours_cryptsetup_readback"] = read_back("/dev/mapper/ours-cs", "xfs") == payload
    sh("cryptsetup", "close", "ours-cs")
    result["ours_wrong_key_exit"] = luks_code("open", dev, "x", "--key-file", str(SHARE / "wrong"))[
        0
    ]
    mark("talos-luks volume done")

    mark("cryptsetup reopen done")
    # 2. formatted by cryptsetup luksFormat (on the host), ext4; opened by talos-luks
    dev = guest.disk("theirs")
    path = luks("open", dev, "theirs", "--key-file", key).strip()
    sh("mkfs.ext4", "-q", path)
    write_and_check(path, "ext4", payload)
    luks("close", "theirs")
    path = luks("open", dev, "theirs", "--key-file", key).strip()
    result["theirs_readback"] = read_back(path, "ext4") == payload
    luks("close", "theirs")

    mark("cryptsetup volume done")
    # 3. apply with a nodeID key from the machine's SMBIOS UUID, config on stdin
    dev = guest.disk("apply")
    config = (SHARE / "machine.yaml").read_bytes()
    apply = ["apply", "--partition", "EPHEMERAL", "--device", dev, *fast]
    result["apply_path"] = luks_script(*apply, stdin=config).strip()
    # again, in-process with the config from a file: the mapping exists and is reused
    result["apply_again_path"] = luks(*apply, "--config", str(SHARE / "machine.yaml")).strip()
    mark("apply done")
    sh("mkfs.ext4", "-q", result["apply_path"])  # type: ignore[arg-type]
    luks("close", Path(str(result["apply_path"])).name)

    # 4. an adiantum volume (libcryptsetup checks that cipher through dm-crypt)
    dev = guest.disk("adiantum")
    guest.modprobe("adiantum", "chacha_generic", "nhpoly1305")
    luks(
        "format",
        dev,
        "--key-file",
        key,
        "--cipher",
        "xchacha12,aes-adiantum-plain64",  # key size: adiantum's default (256)
        *fast,
    )
    path = luks("open", dev, "adi", "--key-file", key).strip()
    with open(path, "r+b") as fh:
        fh.write(payload)
        fh.flush()
        os.fsync(fh.fileno())
    luks("close", "adi")
    path = luks("open", dev, "adi", "--key-file", key).strip()
    with open(path, "rb") as fh:
        result["adiantum_readback"] = fh.read(len(payload)) == payload
    result["adiantum_dump"] = luks("dump", dev)
    luks("close", "adi")

    (SHARE / "result.json").write_text(json.dumps(result))
    return 0


if __name__ == "__main__":
    guest.main(run)
