"""Header commands on sparse files: format, dump, keys, slot conflicts, wrong keys, damage."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path

import pytest

from luks.conftest import FAST, Result, file_hash, header_hash
from talos_luks.volume import Volume

Run = Callable[..., Result]
Key = Callable[[bytes], str]


def load_yaml(text: str) -> dict:
    from libtalos.yamlio import load_one

    return load_one(text).data


def test_format_then_dump_shows_what_was_asked(run: Run, image: Path, key: Key) -> None:
    r = run(
        "format",
        str(image),
        "--key-file",
        key(b"pw"),
        "--sector-size",
        "4096",
        "--key-size",
        "256",
        "--key-slot",
        "2",
        "--label",
        "STATE",
        *FAST,
    )
    assert r.code == 0, r.err
    assert r.out == ""  # data only on stdout; format prints none
    r = run("dump", str(image))
    assert r.code == 0, r.err
    info = load_yaml(r.out)
    assert info["type"] == "LUKS2"
    assert info["cipher"] == "aes-xts-plain64"
    assert info["keySize"] == 256
    assert info["sectorSize"] == 4096
    assert list(info["keyslots"]) == ["2"]
    assert info["keyslots"]["2"]["pbkdf"] == {
        "type": "pbkdf2",
        "hash": "sha256",
        "iterations": 1000,
    }
    assert info["tokens"] == {}


def test_format_default_key_size_is_512(run: Run, image: Path, key: Key) -> None:
    assert run("format", str(image), "-d", key(b"pw"), *FAST).code == 0
    info = load_yaml(run("dump", str(image)).out)
    assert info["keySize"] == 512
    assert info["sectorSize"] == 512
    assert list(info["keyslots"]) == ["0"]


def test_argon2id_parameters_reach_the_key_slot(run: Run, image: Path, key: Key) -> None:
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
    kdf = load_yaml(run("dump", str(image)).out)["keyslots"]["0"]["pbkdf"]
    assert kdf == {"type": "argon2id", "time": 4, "memory": 65536, "threads": 1}


def test_adiantum_cipher(run: Run, image: Path, key: Key) -> None:
    r = run(
        "format",
        str(image),
        "-d",
        key(b"pw"),
        "--cipher",
        "xchacha12,aes-adiantum-plain64",
        "--key-size",
        "256",
        *FAST,
    )
    if r.code != 0 and "device-mapper" in r.err:
        # libcryptsetup checks a cipher AF_ALG lacks through a temporary dm-crypt mapping
        pytest.skip("checking the adiantum cipher needs device-mapper, which this kernel lacks")
    assert r.code == 0, r.err
    assert load_yaml(run("dump", str(image)).out)["cipher"] == "xchacha12,aes-adiantum-plain64"


def test_tokens_are_dumped(image: Path, run: Run, key: Key) -> None:
    assert run("format", str(image), "-d", key(b"pw"), *FAST).code == 0
    with Volume.load(str(image)) as vol:
        vol.set_token(0, {"type": "talos-test", "keyslots": ["0"]})
    info = load_yaml(run("dump", str(image)).out)
    assert info["tokens"] == {"0": {"type": "talos-test", "keyslots": ["0"]}}


def test_add_test_remove_keys(run: Run, image: Path, key: Key) -> None:
    first, second = key(b"first"), key(b"second")
    assert run("format", str(image), "-d", first, *FAST).code == 0
    r = run("add-key", str(image), "-d", first, "--new-key-file", second, "--key-slot", "5", *FAST)
    assert r.code == 0, r.err
    assert run("test-key", str(image), "-d", second).code == 0
    assert run("test-key", str(image), "-d", second, "--key-slot", "5").code == 0
    assert run("test-key", str(image), "-d", second, "--key-slot", "0").code == 2
    assert list(load_yaml(run("dump", str(image)).out)["keyslots"]) == ["0", "5"]
    r = run("remove-key", str(image), "-d", first)  # removes the slot this key opens
    assert r.code == 0, r.err
    assert run("test-key", str(image), "-d", first).code == 2
    assert list(load_yaml(run("dump", str(image)).out)["keyslots"]) == ["5"]


def test_slot_conflict_is_busy_and_changes_nothing(run: Run, image: Path, key: Key) -> None:
    first = key(b"first")
    assert run("format", str(image), "-d", first, *FAST).code == 0
    before = header_hash(image)
    r = run(
        "add-key", str(image), "-d", first, "--new-key-file", key(b"x"), "--key-slot", "0", *FAST
    )
    assert r.code == 5
    assert "key slot 0 is already in use" in r.err
    assert header_hash(image) == before


def test_add_key_with_a_wrong_existing_key(run: Run, image: Path, key: Key) -> None:
    assert run("format", str(image), "-d", key(b"right"), *FAST).code == 0
    before = header_hash(image)
    r = run("add-key", str(image), "-d", key(b"wrong"), "--new-key-file", key(b"new"), *FAST)
    assert r.code == 2
    assert header_hash(image) == before


def test_last_slot_is_not_removed_without_force(run: Run, image: Path, key: Key) -> None:
    pw = key(b"only")
    assert run("format", str(image), "-d", pw, *FAST).code == 0
    before = header_hash(image)
    r = run("remove-key", str(image), "--key-slot", "0")
    assert r.code == 1
    assert "last one" in r.err
    assert header_hash(image) == before
    assert run("remove-key", str(image), "--key-slot", "0", "--force").code == 0
    assert load_yaml(run("dump", str(image)).out)["keyslots"] == {}


def test_removing_an_empty_slot_is_an_error(run: Run, image: Path, key: Key) -> None:
    assert run("format", str(image), "-d", key(b"pw"), *FAST).code == 0
    r = run("remove-key", str(image), "--key-slot", "7")
    assert r.code == 1
    assert "key slot 7 is not in use" in r.err


def test_wrong_key_exits_2_and_leaves_the_header_alone(run: Run, image: Path, key: Key) -> None:
    assert run("format", str(image), "-d", key(b"right"), *FAST).code == 0
    before = header_hash(image)
    r = run("test-key", str(image), "-d", key(b"wrong"))
    assert r.code == 2
    assert "no key slot opens with this key" in r.err
    assert header_hash(image) == before
    # negative control: the hash does see a change to the header
    assert (
        run("add-key", str(image), "-d", key(b"right"), "--new-key-file", key(b"n"), *FAST).code
        == 0
    )
    assert header_hash(image) != before


def _corrupt(path: Path, offset: int) -> None:
    with path.open("r+b") as fh:
        fh.seek(offset)
        byte = fh.read(1)
        fh.seek(offset)
        fh.write(bytes([byte[0] ^ 0xFF]))


def test_tampered_header_is_detected(run: Run, image: Path, key: Key) -> None:
    assert run("format", str(image), "-d", key(b"pw"), *FAST).code == 0
    # flip one byte in the JSON area of both header copies (binary header 4 KiB, copy at 16 KiB)
    _corrupt(image, 4096 + 10)
    _corrupt(image, 16384 + 4096 + 10)
    before = file_hash(image)
    for argv in (["dump", str(image)], ["test-key", str(image), "-d", key(b"pw")]):
        r = run(*argv)
        assert r.code == 1, r.err
        assert "not a LUKS2 volume, or its header is damaged" in r.err
    assert file_hash(image) == before


def test_one_damaged_header_copy_is_survived(run: Run, image: Path, key: Key) -> None:
    assert run("format", str(image), "-d", key(b"pw"), *FAST).code == 0
    _corrupt(image, 4096 + 10)  # primary copy only: the secondary still opens the volume
    assert run("test-key", str(image), "-d", key(b"pw")).code == 0


def test_format_refuses_a_device_holding_data(run: Run, image: Path, key: Key) -> None:
    with image.open("r+b") as fh:
        fh.seek(1024)
        fh.write(b"some filesystem's superblock")
    before = file_hash(image)
    r = run("format", str(image), "-d", key(b"pw"), *FAST)
    assert r.code == 4
    assert "not empty" in r.err
    assert file_hash(image) == before
    assert run("format", str(image), "-d", key(b"pw"), "--force", *FAST).code == 0


def test_format_refuses_an_existing_luks_volume(run: Run, image: Path, key: Key) -> None:
    assert run("format", str(image), "-d", key(b"pw"), *FAST).code == 0
    before = file_hash(image)
    assert run("format", str(image), "-d", key(b"pw"), *FAST).code == 4
    assert file_hash(image) == before


@pytest.mark.parametrize(
    "argv",
    [
        ["bogus"],
        ["test-key"],
        ["format", "/nonexistent", "--key-slot", "notanumber"],
        ["dump", "a", "b"],
    ],
)
def test_usage_errors_exit_1_like_cryptsetup(run: Run, argv: list[str]) -> None:
    r = run(*argv)
    assert r.code == 1, (r.code, r.err)
    assert "Usage" in r.err or "Error" in r.err


def test_bad_parameter_values(run: Run, image: Path, key: Key) -> None:
    pw = key(b"pw")
    r = run("format", str(image), "-d", pw, "--cipher", "rot13", *FAST)
    assert r.code == 1
    assert "--cipher" in r.err
    assert run("format", str(image), "-d", pw, "--sector-size", "3000", *FAST).code == 1
    assert run("format", str(image), "-d", pw, "--key-slot", "32", *FAST).code == 1
    assert run("format", str(image), "-d", pw, "--pbkdf", "md5", *FAST[2:]).code == 1
    assert not image.read_bytes().strip(b"\0")  # nothing was written


def test_missing_device_is_wrong_device(run: Run, tmp_path: Path, key: Key) -> None:
    r = run("dump", str(tmp_path / "nope"))
    assert r.code == 4
    assert "no such device" in r.err


def test_key_sources(run: Run, image: Path, key: Key, tmp_path: Path) -> None:
    r = run("format", str(image), *FAST)
    assert r.code == 1
    assert "no key given" in r.err
    empty = key(b"")
    assert run("format", str(image), "-d", empty, *FAST).code == 1
    r = run("format", str(image), "-d", key(b"x"), "--key-fd", "0", *FAST)
    assert r.code == 1
    assert "cannot be used together" in r.err
    import os

    rfd, wfd = os.pipe()
    os.write(wfd, b"from-a-pipe\n")
    os.close(wfd)
    try:
        assert run("format", str(image), "--key-fd", str(rfd), *FAST).code == 0
    finally:
        os.close(rfd)
    # the trailing newline is part of the key, as with cryptsetup --key-file
    assert run("test-key", str(image), "-d", key(b"from-a-pipe")).code == 2
    assert run("test-key", str(image), "-d", key(b"from-a-pipe\n")).code == 0


def test_keys_never_reach_logs_or_stderr(
    run: Run, image: Path, key: Key, caplog: pytest.LogCaptureFixture
) -> None:
    secret = b"Sup3r-Secret-Passphrase-0123456789"
    wrong = b"Wr0ng-Secret-Passphrase-9876543210"
    caplog.set_level(logging.DEBUG)
    results = [
        run("--debug", "format", str(image), "-d", key(secret), *FAST),
        run("--debug", "test-key", str(image), "-d", key(secret)),
        run("--debug", "test-key", str(image), "-d", key(wrong)),
        run(
            "--debug", "add-key", str(image), "-d", key(wrong), "--new-key-file", key(secret), *FAST
        ),
        run(
            "--debug", "add-key", str(image), "-d", key(secret), "--new-key-file", key(wrong), *FAST
        ),
    ]
    assert [r.code for r in results] == [0, 0, 2, 2, 0]
    lib_records = [r for r in caplog.records if r.name == "talos_luks.libcryptsetup"]
    assert len(lib_records) > 20  # negative control: the debug log really was captured
    text = "\n".join(r.getMessage() for r in caplog.records) + "".join(
        r.err + r.out for r in results
    )
    for s in (secret, wrong):
        assert s.decode() not in text
        assert s.hex() not in text


def test_no_option_takes_a_key_on_the_command_line() -> None:
    """Keys come from files, descriptors or the config: no option or argument carries one."""
    import typer.main

    from talos_luks.app import app

    def walk(cmd: object, path: str) -> list[tuple[str, str]]:
        found = [(path, p.name or "") for p in getattr(cmd, "params", [])]
        for name, sub in (getattr(cmd, "commands", None) or {}).items():
            found += walk(sub, f"{path} {name}")
        return found

    params = walk(typer.main.get_command(app), "talos-luks")
    assert len(params) > 40  # negative control: the walk does see every command's options
    for where, name in params:
        lowered = name.lower()
        if any(word in lowered for word in ("key", "pass", "secret")):
            assert lowered.endswith(("_file", "_fd", "_slot", "_size")), (where, name)


def test_static_passphrases_from_the_config_stay_out_of_logs(
    run: Run, image: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    new, old = "Config-Static-Secret-42", "Old-Static-Secret-17"
    with Volume.handle(str(image)) as vol:
        from talos_luks.volume import FormatOptions, Pbkdf

        vol.format(old.encode(), 1, FormatOptions(pbkdf=Pbkdf(type="pbkdf2", iterations=1000)))
    cfg = tmp_path / "m.yaml"
    cfg.write_text(
        "version: v1alpha1\nmachine:\n    type: init\n"
        "    systemDiskEncryption:\n        state:\n            provider: luks2\n"
        f"            keys:\n                - static: {{passphrase: {new}}}\n                  slot: 0\n"
        f"                - static: {{passphrase: {old}}}\n                  slot: 1\n"
        "cluster: {}\n"
    )
    caplog.set_level(logging.DEBUG)
    r = run(
        "--debug",
        "apply",
        "--partition",
        "STATE",
        "--device",
        str(image),
        "--config",
        str(cfg),
        "--no-activate",
        *FAST,
    )
    assert r.code == 0, r.err
    assert "added key slot 0" in r.err  # negative control: the log was captured
    text = r.err + r.out + "\n".join(rec.getMessage() for rec in caplog.records)
    assert new not in text
    assert old not in text


def test_out_of_memory_exits_3_and_leaves_no_header(image: Path, key: Key) -> None:
    """argon2 asks for more memory than the process may have: exit 3, the device stays empty."""
    import resource
    import subprocess
    import sys

    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))

    exe = str(Path(sys.executable).parent / "talos-luks")
    proc = subprocess.run(
        [
            exe,
            "format",
            str(image),
            "--key-file",
            key(b"pw"),
            "--pbkdf",
            "argon2id",
            "--pbkdf-force-iterations",
            "4",
            "--pbkdf-memory",
            "2097152",
            "--pbkdf-parallel",
            "1",
        ],
        preexec_fn=limit,
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 3, proc.stderr
    assert "out of memory" in proc.stderr
    assert not image.read_bytes().strip(b"\0")  # the half-made header was taken back


def test_key_on_stdin_through_the_console_script(
    image: Path, key: Key, run_script: Callable[..., object]
) -> None:
    from talos_luks.volume import FormatOptions, Pbkdf

    with Volume.handle(str(image)) as vol:
        vol.format(b"piped", 0, FormatOptions(pbkdf=Pbkdf(type="pbkdf2", iterations=1000)))
    ok = run_script("talos-luks", "test-key", str(image), "--key-file", "-", stdin="piped")
    bad = run_script("talos-luks", "test-key", str(image), "--key-file", "-", stdin="piped\n")
    assert (ok.returncode, bad.returncode) == (0, 2)  # type: ignore[attr-defined]
    both = run_script(
        "talos-luks", "add-key", str(image), "--key-file", "-", "--new-key-file", "-", stdin="x"
    )
    assert both.returncode == 1  # type: ignore[attr-defined]
    assert "cannot both read stdin" in both.stderr  # type: ignore[attr-defined]
