"""``apply``: machine.systemDiskEncryption on sparse files (``--no-activate``: no device-mapper).

Format when empty, refuse data, open with the first key that works, then bring the key slots in
line with the config without ever losing the last key that opens the volume.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from luks.conftest import FAST, Result, file_hash, header_hash
from talos_luks.config import read_encryption
from talos_luks.volume import Pbkdf, Volume

Run = Callable[..., Result]
UUID = "5ab9fa8c-6fd4-4c3b-8a4e-2f0c3b6e1d7a"
NODE_STATE = (UUID + "STATE").encode()
FAST_PBKDF = Pbkdf(type="pbkdf2", iterations=1000)


def config(tmp_path: Path, body: str, name: str = "machine.yaml") -> str:
    path = tmp_path / name
    path.write_text(
        "version: v1alpha1\nmachine:\n    type: init\n    systemDiskEncryption:\n"
        + body
        + "cluster: {}\n"
    )
    return str(path)


def apply(run: Run, cfg: str, image: Path, *extra: str) -> Result:
    return run(
        "apply",
        "--partition",
        "STATE",
        "--device",
        str(image),
        "--config",
        cfg,
        "--uuid",
        UUID,
        "--no-activate",
        *FAST,
        *extra,
    )


def slots(image: Path) -> list[int]:
    with Volume.load(str(image)) as vol:
        return vol.active_slots()


def opens(image: Path, key: bytes, slot: int = -1) -> bool:
    with Volume.load(str(image)) as vol:
        return vol.try_key(key, slot) is not None


def prepare(image: Path, keys: dict[int, bytes]) -> None:
    """A LUKS2 volume with exactly ``keys`` (slot -> passphrase)."""
    from talos_luks.volume import FormatOptions

    items = sorted(keys.items())
    with Volume.handle(str(image)) as vol:
        vol.format(items[0][1], items[0][0], FormatOptions(pbkdf=FAST_PBKDF))
    with Volume.load(str(image)) as vol:
        vol.set_pbkdf(FAST_PBKDF)
        for slot, key in items[1:]:
            vol.add_key(items[0][1], key, slot)


STATE_TWO_KEYS = """\
        state:
            provider: luks2
            keys:
                - nodeID: {}
                  slot: 0
                - static:
                    passphrase: topsecret
                  slot: 1
"""


def test_empty_device_is_formatted_with_every_configured_key(
    run: Run, image: Path, tmp_path: Path
) -> None:
    r = apply(run, config(tmp_path, STATE_TWO_KEYS), image)
    assert r.code == 0, r.err
    assert r.out == ""  # --no-activate maps nothing, prints nothing
    assert slots(image) == [0, 1]
    assert opens(image, NODE_STATE, 0)
    assert opens(image, b"topsecret", 1)
    assert "topsecret" not in r.err


def test_second_apply_changes_nothing(run: Run, image: Path, tmp_path: Path) -> None:
    cfg = config(tmp_path, STATE_TWO_KEYS)
    assert apply(run, cfg, image).code == 0
    before = header_hash(image)
    r = apply(run, cfg, image)
    assert r.code == 0, r.err
    assert header_hash(image) == before


def test_options_of_later_releases_reach_the_header(run: Run, image: Path, tmp_path: Path) -> None:
    body = STATE_TWO_KEYS + "            keySize: 256\n            blockSize: 4096\n"
    assert apply(run, config(tmp_path, body), image).code == 0
    from libtalos.yamlio import load_one

    info = load_one(run("dump", str(image)).out).data
    assert (info["keySize"], info["sectorSize"], info["cipher"]) == (256, 4096, "aes-xts-plain64")


def test_missing_slot_is_added(run: Run, image: Path, tmp_path: Path) -> None:
    prepare(image, {0: NODE_STATE})
    r = apply(run, config(tmp_path, STATE_TWO_KEYS), image)
    assert r.code == 0, r.err
    assert slots(image) == [0, 1]
    assert opens(image, b"topsecret", 1)
    assert "added key slot 1" in r.err


def test_failing_slot_is_replaced(run: Run, image: Path, tmp_path: Path) -> None:
    prepare(image, {0: NODE_STATE, 1: b"old-static"})
    r = apply(run, config(tmp_path, STATE_TWO_KEYS), image)
    assert r.code == 0, r.err
    assert opens(image, b"topsecret", 1)
    assert not opens(image, b"old-static")
    assert "replaced key slot 1" in r.err


def test_slot_not_in_config_is_removed(run: Run, image: Path, tmp_path: Path) -> None:
    prepare(image, {0: NODE_STATE, 1: b"topsecret", 7: b"stray"})
    r = apply(run, config(tmp_path, STATE_TWO_KEYS), image)
    assert r.code == 0, r.err
    assert slots(image) == [0, 1]
    assert not opens(image, b"stray")


def test_last_working_key_is_kept_whatever_the_order(run: Run, image: Path, tmp_path: Path) -> None:
    # Only the static key opens the volume, and it sits in slot 0, which the config gives to
    # nodeID. Replacing slot 0 first (config order) would destroy the only working key before
    # anything else could be added. apply must add slot 1 first, verify it, then replace slot 0.
    prepare(image, {0: b"topsecret"})
    r = apply(run, config(tmp_path, STATE_TWO_KEYS), image)
    assert r.code == 0, r.err
    assert opens(image, NODE_STATE, 0)
    assert opens(image, b"topsecret", 1)
    assert slots(image) == [0, 1]


def test_working_key_in_an_unconfigured_slot_survives_until_replaced(
    run: Run, image: Path, tmp_path: Path
) -> None:
    prepare(image, {5: b"topsecret", 0: b"something-else"})
    r = apply(run, config(tmp_path, STATE_TWO_KEYS), image)
    assert r.code == 0, r.err
    assert slots(image) == [0, 1]
    assert opens(image, NODE_STATE, 0)
    assert opens(image, b"topsecret", 1)


def test_no_configured_key_opens_exit_2_nothing_changes(
    run: Run, image: Path, tmp_path: Path
) -> None:
    prepare(image, {0: b"unknown-1", 3: b"unknown-2"})
    before = file_hash(image)
    r = apply(run, config(tmp_path, STATE_TWO_KEYS), image)
    assert r.code == 2
    assert "none of the configured keys opens the volume" in r.err
    assert file_hash(image) == before


def test_non_empty_non_luks_device_is_refused_untouched(
    run: Run, image: Path, tmp_path: Path
) -> None:
    with image.open("r+b") as fh:
        fh.write(b"XFSB" + b"\1" * 508)
    before = file_hash(image)
    r = apply(run, config(tmp_path, STATE_TWO_KEYS), image)
    assert r.code == 4
    assert "not empty and not a LUKS2 volume" in r.err
    assert file_hash(image) == before


def test_partition_without_encryption_config(run: Run, image: Path, tmp_path: Path) -> None:
    body = "        ephemeral:\n            provider: luks2\n            keys: [{nodeID: {}, slot: 0}]\n"
    r = apply(run, config(tmp_path, body), image)
    assert r.code == 1
    assert "machine.systemDiskEncryption.state is not set" in r.err
    assert not image.read_bytes().strip(b"\0")


def test_ephemeral_uses_its_own_label(run: Run, image: Path, tmp_path: Path) -> None:
    body = "        ephemeral:\n            provider: luks2\n            keys: [{nodeID: {}, slot: 0}]\n"
    r = run(
        "apply",
        "--partition",
        "EPHEMERAL",
        "--device",
        str(image),
        "--config",
        config(tmp_path, body),
        "--uuid",
        UUID,
        "--no-activate",
        *FAST,
    )
    assert r.code == 0, r.err
    assert opens(image, (UUID + "EPHEMERAL").encode(), 0)
    assert not opens(image, NODE_STATE)


def test_config_on_stdin(image: Path, tmp_path: Path, run_script: Callable[..., object]) -> None:
    text = Path(config(tmp_path, STATE_TWO_KEYS)).read_text()
    proc = run_script(
        "talos-luks",
        "apply",
        "--partition",
        "STATE",
        "--device",
        str(image),
        "--uuid",
        UUID,
        "--no-activate",
        *FAST,
        stdin=text,
    )
    assert proc.returncode == 0, proc.stderr  # type: ignore[attr-defined]
    assert opens(image, b"topsecret", 1)


BAD_CONFIGS = [
    (
        "        state:\n            provider: luks1\n            keys: [{nodeID: {}, slot: 0}]\n",
        ["machine.systemDiskEncryption.state.provider: must be luks2"],
    ),
    (
        # structure first (libtalos's model): the misspelt key, with its line
        "        state:\n            provider: luks2\n            kees: []\n",
        ["machine.yaml:7 document 1: machine.systemDiskEncryption.state.kees: unknown key"],
    ),
    (
        "        state:\n            provider: luks2\n            keys: []\n            options: [fast]\n",
        [
            "2 problems found",
            "machine.systemDiskEncryption.state.options[0]: must be one of no_read_workqueue",
            "machine.systemDiskEncryption.state.keys: must be a non-empty list",
        ],
    ),
    (
        "        state:\n            provider: luks2\n            keys:\n"
        "                - {nodeID: {}, slot: 0}\n                - {static: {passphrase: p}, slot: 0}\n",
        ["machine.systemDiskEncryption.state.keys[1].slot: slot 0 is already used by keys[0]"],
    ),
    (
        "        state:\n            provider: luks2\n            keys:\n"
        "                - {static: {passphrase: hunter2}, nodeID: {}, slot: 0}\n",
        ["keys[0]: needs exactly one of static or nodeID"],
    ),
    (
        "        state:\n            provider: luks2\n            cipher: des\n            keys:\n"
        "                - {static: {passphrase: hunter2}, slot: 40}\n",
        ["state.cipher: must be one of", "keys[0].slot: is required: a key slot number 0-31"],
    ),
]


@pytest.mark.parametrize(("body", "messages"), BAD_CONFIGS)
def test_bad_configs_report_every_problem_without_secrets(
    run: Run, image: Path, tmp_path: Path, body: str, messages: list[str]
) -> None:
    r = apply(run, config(tmp_path, body), image)
    assert r.code == 1
    for m in messages:
        assert m in r.err, r.err
    assert "hunter2" not in r.err
    assert not image.read_bytes().strip(b"\0")  # nothing written


def test_malformed_yaml_names_the_line(run: Run, image: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("machine:\n  systemDiskEncryption: [unclosed\n")
    r = apply(run, str(path), image)
    assert r.code == 1
    assert "bad.yaml" in r.err
    assert "malformed YAML" in r.err


def test_read_encryption_returns_none_when_absent() -> None:
    head = "version: v1alpha1\nmachine:\n    type: init\n"
    assert read_encryption(head + "cluster: {}\n", "x", "STATE") is None
    spec = read_encryption(
        head + "    systemDiskEncryption:\n        state:\n            provider: luks2\n"
        "            keys: [{static: {passphrase: a}, slot: 3}, {nodeID: {}, slot: 1}]\n"
        "cluster: {}\n",
        "x",
        "STATE",
    )
    assert spec is not None
    assert [k.slot for k in spec.keys] == [1, 3]  # slot order: the first key formats
    assert "passphrase=" not in repr(spec)  # never printed, even in a repr


def test_input_must_be_a_machine_config(run: Run, image: Path, tmp_path: Path) -> None:
    path = tmp_path / "notconfig.yaml"
    path.write_text("machine:\n    systemDiskEncryption: {}\n    bogus: 1\n")
    r = apply(run, str(path), image)
    assert r.code == 1
    assert "notconfig.yaml:3 document 1: machine.bogus: unknown key" in r.err
    assert "cluster: is required" in r.err
    assert not image.read_bytes().strip(b"\0")


def test_each_slot_is_tested_once_when_in_sync(
    image: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A key derivation costs seconds with argon2: an in-sync volume costs one per key (the
    search for a working key counts for its own slot), not a re-test after each step."""
    from talos_luks.apply import apply as apply_fn

    prepare(image, {0: NODE_STATE, 1: b"topsecret"})
    spec = read_encryption(Path(config(tmp_path, STATE_TWO_KEYS)).read_text(), "m", "STATE")
    assert spec is not None
    calls: list[int] = []
    real = Volume.test_key

    def counting(self: Volume, key: bytes, slot: int = -1) -> int:
        calls.append(slot)
        return real(self, key, slot)

    monkeypatch.setattr(Volume, "test_key", counting)
    result = apply_fn(str(image), spec, partition="STATE", system_uuid=UUID, activate=False)
    assert (result.added, result.replaced, result.removed) == ([], [], [])
    assert calls == [-1, 1]  # find the working key (it opens slot 0), then check slot 1
