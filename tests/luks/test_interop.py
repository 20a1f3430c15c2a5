"""Interoperability with the cryptsetup CLI on header level (sparse files, no device-mapper).

A volume formatted by talos-luks passes ``cryptsetup open --test-passphrase`` and ``luksDump``
shows the parameters asked for; a volume made by ``cryptsetup luksFormat`` (including Talos
v0.9's exact command line with a nodeID key) opens with talos-luks; exit codes agree.
"""

from __future__ import annotations

import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from luks.conftest import FAST, Result

Run = Callable[..., Result]
UUID = "5ab9fa8c-6fd4-4c3b-8a4e-2f0c3b6e1d7a"
CS_FAST = ["--pbkdf", "pbkdf2", "--pbkdf-force-iterations", "1000"]


@pytest.fixture(scope="module")
def cryptsetup() -> str:
    path = shutil.which("cryptsetup") or "/usr/sbin/cryptsetup"
    if not Path(path).exists():
        pytest.fail(
            "the cryptsetup CLI is required (Debian cryptsetup-bin; scripts/setup installs it)"
        )
    return path


def cs(cryptsetup: str, *args: str, key: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run(
        [cryptsetup, "--batch-mode", *args], input=key, capture_output=True, timeout=120
    )


def test_our_volume_passes_cryptsetup(
    run: Run, image: Path, key: Callable[[bytes], str], cryptsetup: str
) -> None:
    r = run(
        "format",
        str(image),
        "-d",
        key(b"pw"),
        "--sector-size",
        "4096",
        "--key-size",
        "256",
        "--key-slot",
        "3",
        *FAST,
    )
    assert r.code == 0, r.err
    dump = cs(cryptsetup, "luksDump", str(image)).stdout.decode()
    assert "cipher: aes-xts-plain64" in dump
    assert "sector: 4096 [bytes]" in dump
    assert "  3: luks2" in dump
    assert "Key:        256 bits" in dump
    assert "PBKDF:      pbkdf2" in dump
    assert "Iterations: 1000" in dump
    ok = cs(cryptsetup, "open", "--test-passphrase", "--key-file", "-", str(image), key=b"pw")
    assert ok.returncode == 0, ok.stderr
    bad = cs(cryptsetup, "open", "--test-passphrase", "--key-file", "-", str(image), key=b"nope")
    assert bad.returncode == 2
    assert run("test-key", str(image), "-d", key(b"nope")).code == bad.returncode


def test_our_argon2id_parameters_in_luksdump(
    run: Run, image: Path, key: Callable[[bytes], str], cryptsetup: str
) -> None:
    r = run(
        "format",
        str(image),
        "-d",
        key(b"pw"),
        "--pbkdf",
        "argon2id",
        "--pbkdf-force-iterations",
        "4",
        "--pbkdf-memory",
        "65536",
        "--pbkdf-parallel",
        "1",
    )
    assert r.code == 0, r.err
    dump = cs(cryptsetup, "luksDump", str(image)).stdout.decode()
    assert "PBKDF:      argon2id" in dump
    assert "Time cost:  4" in dump
    assert "Memory:     65536" in dump
    assert "Threads:    1" in dump


def test_cryptsetup_volume_opens_with_us(
    run: Run, image: Path, key: Callable[[bytes], str], cryptsetup: str
) -> None:
    made = cs(
        cryptsetup,
        "luksFormat",
        "--type",
        "luks2",
        "--key-file",
        "-",
        *CS_FAST,
        str(image),
        key=b"their key",
    )
    assert made.returncode == 0, made.stderr
    assert run("test-key", str(image), "-d", key(b"their key")).code == 0
    assert run("test-key", str(image), "-d", key(b"other")).code == 2
    from libtalos.yamlio import load_one

    info = load_one(run("dump", str(image)).out).data
    assert (info["cipher"], info["keySize"], list(info["keyslots"])) == (
        "aes-xts-plain64",
        512,
        ["0"],
    )
    # and keys we add are seen by cryptsetup
    assert (
        run(
            "add-key",
            str(image),
            "-d",
            key(b"their key"),
            "--new-key-file",
            key(b"ours"),
            "--key-slot",
            "9",
            *FAST,
        ).code
        == 0
    )
    ok = cs(
        cryptsetup,
        "open",
        "--test-passphrase",
        "--key-slot",
        "9",
        "--key-file",
        "-",
        str(image),
        key=b"ours",
    )
    assert ok.returncode == 0, ok.stderr


def test_talos_v09_format_command_with_a_nodeid_key_opens_with_apply(
    run: Run, image: Path, tmp_path: Path, cryptsetup: str
) -> None:
    # Talos v0.9: `cryptsetup luksFormat --type luks2 --key-file=- -c aes-xts-plain64 DEV --key-slot=N`
    # with the nodeID passphrase on stdin (PBKDF lowered here only to keep the test fast).
    made = cs(
        cryptsetup,
        "luksFormat",
        "--type",
        "luks2",
        "--key-file=-",
        "-c",
        "aes-xts-plain64",
        *CS_FAST,
        str(image),
        "--key-slot=0",
        key=(UUID + "EPHEMERAL").encode(),
    )
    assert made.returncode == 0, made.stderr
    cfg = tmp_path / "m.yaml"
    cfg.write_text(
        "version: v1alpha1\nmachine:\n    type: join\n    systemDiskEncryption:\n"
        "        ephemeral:\n            provider: luks2\n            keys: [{nodeID: {}, slot: 0}]\n"
        "cluster: {}\n"
    )
    r = run(
        "apply",
        "--partition",
        "EPHEMERAL",
        "--device",
        str(image),
        "--config",
        str(cfg),
        "--uuid",
        UUID,
        "--no-activate",
        *FAST,
    )
    assert r.code == 0, r.err
    assert "formatted" not in r.err  # opened, not re-formatted
    # and the reverse: our nodeID key, tested by cryptsetup
    ours = tmp_path / "ours.img"
    with ours.open("wb") as fh:
        fh.truncate(32 << 20)
    r = run(
        "apply",
        "--partition",
        "EPHEMERAL",
        "--device",
        str(ours),
        "--config",
        str(cfg),
        "--uuid",
        UUID,
        "--no-activate",
        *FAST,
    )
    assert r.code == 0, r.err
    ok = cs(
        cryptsetup,
        "open",
        "--test-passphrase",
        "--key-file=-",
        str(ours),
        key=(UUID + "EPHEMERAL").encode(),
    )
    assert ok.returncode == 0, ok.stderr


def test_exit_codes_agree_with_cryptsetup(run: Run, tmp_path: Path, cryptsetup: str) -> None:
    junk = tmp_path / "junk.img"
    junk.write_bytes(b"not luks" * 100000)
    ours = run("dump", str(junk)).code
    theirs = cs(cryptsetup, "luksDump", str(junk)).returncode
    assert ours == theirs == 1
    # usage error: cryptsetup exits 1, so do we
    assert cs(cryptsetup, "luksDump").returncode == 1
    assert run("dump").code == 1
