"""The fast path (``talos_luks.fastpath``'s table of common forms, run by ``libtalos.fastpath``
without Typer) and the Typer app behave the same: same exit code, stdout, stderr and files for
the same command line, including failures. The fast path is really taken for the common forms
(Typer is not even imported) and really not taken for the others."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from .conftest import FAST, Result, file_hash

Run = Callable[..., Result]
UUID = "5ab9fa8c-6fd4-4c3b-8a4e-2f0c3b6e1d7a"


@pytest.fixture
def both(run: Run, monkeypatch: pytest.MonkeyPatch) -> Callable[..., tuple[Result, Result]]:
    """Run the same argv through the fast path, then through Typer (fast path switched off: an
    empty table)."""
    from talos_luks import fastpath

    real = fastpath.COMMANDS

    def _both(*argv: str, before: Callable[[], None] | None = None) -> tuple[Result, Result]:
        results = []
        for table in (real, {}):
            if before is not None:
                before()
            monkeypatch.setattr(fastpath, "COMMANDS", table)
            results.append(run(*argv))
        monkeypatch.setattr(fastpath, "COMMANDS", real)
        return results[0], results[1]

    return _both


def _same(pair: tuple[Result, Result]) -> Result:
    fast, typer = pair
    assert (fast.code, fast.out, fast.err) == (typer.code, typer.out, typer.err)
    return fast


def _header_facts(image: Path) -> dict[str, Any]:
    """What ``dump`` says about a header, less what is random per format (the UUID)."""
    from talos_luks.volume import Volume

    with Volume.load(str(image)) as vol:
        data = vol.describe()
    data.pop("uuid")
    data.pop("device")
    return data


@pytest.fixture
def images(tmp_path: Path) -> Iterator[Callable[[str], Path]]:
    def _make(name: str) -> Path:
        path = tmp_path / name
        with path.open("wb") as fh:
            fh.truncate(32 << 20)
        return path

    yield _make


def test_format_writes_the_same_header_both_ways(
    both: Callable[..., tuple[Result, Result]],
    images: Callable[[str], Path],
    key: Callable[[bytes], str],
    run: Run,
) -> None:
    k = key(b"format key")
    a, b = images("a.img"), images("b.img")
    extra = [
        "--cipher",
        "aes-xts-plain64",
        "-s",
        "256",
        "--sector-size=4096",
        "--label",
        "L",
        "-S",
        "3",
        *FAST,
    ]
    fast = run("format", str(a), "--key-file", k, *extra)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr("talos_luks.fastpath.COMMANDS", {})
        typer = run("format", str(b), "--key-file", k, *extra)
    assert (fast.code, fast.out) == (typer.code, typer.out) == (0, "")
    assert fast.err.replace(str(a), "X") == typer.err.replace(str(b), "X")
    assert _header_facts(a) == _header_facts(b)
    facts: dict[str, Any] = _header_facts(a)
    assert (facts["keySize"], facts["sectorSize"], list(facts["keyslots"])) == (256, 4096, ["3"])

    # refusals leave the device alone, both ways
    before = file_hash(a)
    _same(both("format", str(a), "--key-file", k, *FAST))  # not empty, no --force: 4
    assert run("format", str(a), "--key-file", k, *FAST).code == 4
    r = _same(both("format", str(a), "--key-file", k, "--force", "--pbkdf", "nope"))
    assert r.code == 1 and "nope" in r.err
    r = _same(both("format", str(a), "--force", *FAST))  # no key
    assert r.code == 1 and "--key-file" in r.err
    assert file_hash(a) == before


def test_header_commands_agree(
    both: Callable[..., tuple[Result, Result]],
    image: Path,
    key: Callable[[bytes], str],
    run: Run,
    tmp_path: Path,
) -> None:
    good, wrong = key(b"good"), key(b"wrong")
    assert run("format", str(image), "--key-file", good, *FAST).code == 0
    cases = [
        (("test-key", str(image), "--key-file", good), 0),
        (("test-key", str(image), "-d", good, "-S", "0"), 0),
        (("test-key", "--key-file=" + good, str(image)), 0),
        (("test-key", str(image), "--key-file", wrong), 2),
        (("test-key", str(image), "--key-file", good, "--key-slot", "5"), 1),  # empty slot
        (("test-key", str(image), "--key-file", str(tmp_path / "missing")), 1),
        (("dump", str(image)), 0),
        (("dump", str(tmp_path / "missing.img")), 4),
        (("open", str(image), "m", "--key-file", good, "--readonly"), 1),  # no device-mapper
        (("close", "m"), 4),
        (("status", "m"), 1),
    ]
    dm = not _device_mapper_missing()
    got = [(argv, _same(both(*argv)).code) for argv, _ in cases]
    want = [(argv, code) for argv, code in cases]
    if dm:  # with device-mapper, the mapping commands' codes differ (tests/luks VM checks them)
        got, want = got[:-3], want[:-3]
    assert got == want
    # stdin keys: the same bytes read both ways
    stdin_key = Path(good).read_bytes()
    for path in (True, False):
        proc = subprocess.run(
            [_tool(), "test-key", str(image), "--key-file", "-"]
            if path
            else [_tool(), "-v", "test-key", str(image), "--key-file", "-"],
            input=stdin_key,
            capture_output=True,
            check=False,
        )
        assert proc.returncode == 0, proc.stderr


def test_dump_output_is_byte_identical(
    both: Callable[..., tuple[Result, Result]], image: Path, key: Callable[[bytes], str], run: Run
) -> None:
    assert run("format", str(image), "--key-file", key(b"k"), *FAST).code == 0
    r = _same(both("dump", str(image)))
    assert r.code == 0 and yaml.safe_load(r.out)["type"] == "LUKS2"


def test_apply_agrees(
    both: Callable[..., tuple[Result, Result]], images: Callable[[str], Path], tmp_path: Path
) -> None:
    cfg = tmp_path / "machine.yaml"
    cfg.write_text(
        "version: v1alpha1\nmachine:\n    type: init\n    systemDiskEncryption:\n"
        "        state:\n            provider: luks2\n            keys:\n"
        "                - static:\n                    passphrase: topsecret\n"
        "                  slot: 0\ncluster: {}\n"
    )
    a = images("a.img")
    argv = [
        "apply",
        "--partition",
        "STATE",
        "--device",
        str(a),
        "--config",
        str(cfg),
        "--uuid",
        UUID,
        "--no-activate",
        *FAST,
    ]
    # first run formats (fast path); wiping the image before the Typer run makes it format too

    def wipe() -> None:
        with a.open("wb") as fh:
            fh.truncate(32 << 20)

    fast, typer = both(*argv, before=wipe)
    assert (fast.code, fast.out) == (typer.code, typer.out) == (0, "")
    assert fast.err.replace(str(a), "X") == typer.err.replace(str(a), "X")
    assert "topsecret" not in fast.err
    r = _same(both("apply", "--partition", "BOOT", "--device", str(a), "--config", str(cfg)))
    assert r.code == 1 and "--partition" in r.err


def _device_mapper_missing() -> bool:
    from talos_luks.volume import device_mapper_state

    return device_mapper_state("talos-luks-probe") == "unavailable"


def _tool() -> str:
    return str(Path(sys.executable).parent / "talos-luks")


@pytest.mark.parametrize(
    "argv",
    [
        [
            "format",
            "IMG",
            "--key-file",
            "K",
            "--force",
            "--pbkdf",
            "pbkdf2",
            "--pbkdf-force-iterations",
            "1000",
            "--pbkdf-memory",
            "1024",
            "--pbkdf-parallel",
            "1",
        ],
        ["test-key", "IMG", "--key-file", "K"],
        ["open", "IMG", "NAME", "-d", "K", "--allow-discards"],
        ["close", "NAME"],
        ["status", "NAME"],
        ["dump", "IMG"],
        ["apply", "--partition", "STATE", "--device", "IMG", "--no-activate"],
    ],
)
def test_common_forms_take_the_fast_path(argv: list[str]) -> None:
    from libtalos.fastpath import parse
    from talos_luks.fastpath import COMMANDS

    assert parse(COMMANDS, argv) is not None


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--help"],
        ["-v", "test-key", "IMG", "--key-file", "K"],  # a global option before the command
        ["test-key", "IMG", "--key-file", "K", "--help"],
        ["test-key", "IMG", "--key-file", "K", "--key-file", "K2"],  # repeated
        ["test-key", "IMG", "--key-file", "K", "-d", "K2"],  # repeated under two spellings
        ["test-key", "IMG", "--key-file"],  # missing value
        ["test-key", "IMG", "--key-file", "--key-slot", "1"],  # value looks like an option
        ["test-key", "IMG", "-S", "-1"],  # negative numbers: Click decides
        ["test-key", "IMG", "-S=1"],  # Click reads "=1" as the value
        ["test-key", "IMG", "-dK"],  # attached short value
        ["test-key", "IMG", "--key-slot", "one"],  # not an integer
        ["test-key", "--", "IMG"],
        ["test-key"],  # missing argument
        ["test-key", "IMG", "EXTRA", "--key-file", "K"],  # extra argument
        ["test-key", "IMG", "--pbkdf", "pbkdf2"],  # an option of another command
        ["format", "IMG", "--force=yes"],
        ["add-key", "IMG", "--key-file", "K", "--new-key-file", "N"],  # not a common form
        ["apply", "--device", "IMG"],  # a required option missing
        ["derive-key", "nodeid", "--label", "STATE"],
    ],
)
def test_other_forms_go_to_typer(argv: list[str]) -> None:
    from libtalos.fastpath import parse
    from talos_luks.fastpath import COMMANDS

    assert parse(COMMANDS, argv) is None


def test_fast_path_does_not_import_typer(image: Path, key: Callable[[bytes], str]) -> None:
    """In a fresh interpreter: the common form leaves Typer unimported; a form the fast path does
    not take imports it (the negative control: the probe can see Typer)."""
    k = key(b"k")
    probe = (
        "import sys; from talos_luks.cli import main; rc = main(sys.argv[1:]); "
        "print(rc, 'typer' in sys.modules, 'click' in sys.modules or 'typer._click' in sys.modules)"
    )

    def imports(*argv: str) -> str:
        proc = subprocess.run(
            [sys.executable, "-c", probe, *argv], capture_output=True, text=True, check=False
        )
        return proc.stdout.strip()

    assert imports("format", str(image), "--key-file", k, *FAST) == "0 False False"
    assert imports("test-key", str(image), "--key-file", k) == "0 False False"
    assert imports("-v", "test-key", str(image), "--key-file", k) == "0 True True"
    assert imports("test-key", str(image), "--key-file", k, "--key-slot", "x") == "1 True True"


def test_usage_errors_keep_exit_1(run: Run) -> None:
    """What the fast path hands over is still reported by Click, with cryptsetup's usage exit."""
    r = run("test-key", "IMG", "--key-slot", "one")
    assert r.code == 1 and "--key-slot" in r.err
    r = run("test-key")
    assert r.code == 1 and "DEVICE" in r.err.upper()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--pbkdf-memory", "99999999999", "--pbkdf-memory: 99999999999 is out of range (32 to "),
        ("--pbkdf-memory", "0", "--pbkdf-memory: 0 is out of range"),
        ("--pbkdf-parallel", "64", "--pbkdf-parallel: 64 is out of range (1 to 4)"),
        ("--iter-time", "-1", "--iter-time: -1 is out of range"),
        ("--pbkdf-force-iterations", str(2**40), "--pbkdf-force-iterations: 1099511627776 is"),
    ],
)
def test_pbkdf_bounds_exit_1_on_both_paths_and_touch_nothing(
    both: Any, image: Path, key: Callable[[bytes], str], option: str, value: str, message: str
) -> None:
    before = file_hash(image)
    argv = ["format", "--pbkdf", "argon2id", option, value, "--key-file", key(b"k"), str(image)]
    result = _same(both(*argv))
    assert (result.code, result.out) == (1, ""), result  # cryptsetup's "wrong parameters"
    assert message in result.err and "internal error" not in result.err, result.err
    assert file_hash(image) == before


def test_pbkdf_bounds_negative_control(run: Run, image: Path, key: Callable[[bytes], str]) -> None:
    """The bounds themselves are accepted: 32 KiB of argon2 memory, 4 threads."""
    argv = [
        "format",
        "--pbkdf",
        "argon2id",
        "--pbkdf-memory",
        "32",
        "--pbkdf-parallel",
        "4",
        "--pbkdf-force-iterations",
        "4",
        "--key-file",
        key(b"k"),
        str(image),
    ]
    result = run(*argv)
    assert result.code == 0, result.err


def test_add_key_pbkdf_bound_exit_1_and_leaves_the_header(
    run: Run, image: Path, key: Callable[[bytes], str]
) -> None:
    """add-key (a Typer-only command) checks the same bounds before it touches a slot."""
    old, new = key(b"old"), key(b"new")
    assert run("format", *FAST, "--key-file", old, str(image)).code == 0
    before = file_hash(image)
    r = run(
        "add-key",
        str(image),
        "--key-file",
        old,
        "--new-key-file",
        new,
        "--pbkdf",
        "argon2id",
        "--pbkdf-memory",
        "4194305",
    )
    assert (r.code, r.out) == (1, ""), r
    assert "--pbkdf-memory: 4194305 is out of range (32 to 4194304 KiB)" in r.err, r.err
    assert file_hash(image) == before
    # negative control: the same command within the bounds adds the slot
    r = run("add-key", str(image), "--key-file", old, "--new-key-file", new, *FAST)
    assert r.code == 0, r.err
    assert file_hash(image) != before
