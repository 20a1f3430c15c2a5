"""talosconfig: strict load, merge with renames, default path, 0600 save."""

import stat

import pytest

from libtalos import talosconfig as tc
from libtalos.errors import UsageError, ValidationError

GOOD = """\
context: a
contexts:
    a:
        endpoints:
            - 10.5.0.2
        ca: Y2E=
        crt: Y3J0
        key: a2V5
    legacy:
        target: 1.2.3.4
"""


def test_load_and_round_trip():
    cfg = tc.loads(GOOD, "tc")
    assert cfg.context == "a"
    assert cfg.contexts["a"].endpoints == ["10.5.0.2"]
    assert cfg.contexts["legacy"].endpoints == ["1.2.3.4"]  # target moved into endpoints
    again = tc.loads(cfg.to_yaml())
    assert again == cfg
    assert "nodes" not in cfg.to_yaml()  # omitted when empty, as talosctl does


def test_strict_errors_name_key_and_line():
    text = "context: a\ncontexts:\n    a:\n        endpoint: [x]\n        ca: '***'\n        nodes: 3\n"
    with pytest.raises(ValidationError) as info:
        tc.loads(text, "tc")
    msg = str(info.value)
    assert "tc:4 document 1: contexts.a.endpoint: unknown key" in msg
    assert "tc:5 document 1: contexts.a.ca: is not valid base64" in msg
    assert "tc:6 document 1: contexts.a.nodes: must be a list of strings" in msg


def test_current_context_must_exist():
    with pytest.raises(ValidationError, match="names a context that is not defined"):
        tc.loads("context: x\ncontexts: {}\n")


def test_merge_renames_clashes_and_switches_context():
    base = tc.loads(GOOD)
    other = tc.loads(GOOD)
    msgs = base.merge(other)
    assert msgs == [
        'renamed talosconfig context "a" -> "a-1"',
        'renamed talosconfig context "legacy" -> "legacy-1"',
    ]
    assert base.context == "a-1"
    msgs = base.merge(tc.loads(GOOD))
    assert msgs[0] == 'renamed talosconfig context "a" -> "a-2"'
    assert sorted(base.contexts) == ["a", "a-1", "a-2", "legacy", "legacy-1", "legacy-2"]


def test_use_unknown_context_is_usage_error():
    cfg = tc.loads(GOOD)
    with pytest.raises(UsageError):
        cfg.use("nope")
    cfg.use("legacy")
    assert cfg.context == "legacy"


def test_default_path(monkeypatch, tmp_path):
    monkeypatch.setenv("TALOSCONFIG", str(tmp_path / "x"))
    assert tc.default_path() == tmp_path / "x"
    assert tc.default_path("explicit") == tc.Path("explicit")
    monkeypatch.delenv("TALOSCONFIG")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert tc.default_path() == tmp_path / ".talos" / "config"


def test_missing_file_is_empty_and_save_is_0600(tmp_path):
    path = tmp_path / "sub" / "config"
    cfg = tc.load(path)
    assert cfg.contexts == {}
    cfg.merge(tc.loads(GOOD))
    tc.save(cfg, path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert tc.load(path).contexts["a"].key == "a2V5"


# -- endpoints, names and file contents ---------------------------------------------------------

BAD_ENDPOINT = """\
context: a
contexts:
    a:
        endpoints: [10.5.0.2, "https://x:y:z"]
    b:
        endpoints: ["[fd00::1]:50000", node-1]
"""


def test_endpoints_of_checks_each_and_names_file_context_and_index():
    cfg = tc.loads(BAD_ENDPOINT, "/home/u/.talos/config")  # loading does not refuse it ...
    with pytest.raises(ValidationError) as info:
        cfg.endpoints_of(source="/home/u/.talos/config")  # ... using it does
    assert str(info.value) == (
        "/home/u/.talos/config: contexts.a.endpoints[1]: "
        "endpoint 'https://x:y:z': must be host or host:port, without a scheme"
    )
    assert info.value.exit_code == 1  # the file is wrong, not the command line
    assert "config endpoint" in (info.value.hint or "")
    assert cfg.endpoints_of("b") == ["[fd00::1]:50000", "node-1"]  # negative control


def test_legacy_target_is_checked_too():
    cfg = tc.loads("context: a\ncontexts:\n    a:\n        target: '1.2.3.4:99999'\n", "f")
    with pytest.raises(ValidationError, match=r"contexts\.a\.endpoints\[0\]: .*out of range"):
        cfg.endpoints_of(source="f")


def test_check_endpoints_is_a_usage_error_naming_the_argument():
    assert tc.check_endpoints(["10.5.0.2", "h:1"], "-e") == ["10.5.0.2", "h:1"]
    with pytest.raises(UsageError) as info:
        tc.check_endpoints(["10.5.0.2", "1.2.3.4:99999"], "-e/--endpoints")
    assert str(info.value) == "-e/--endpoints '1.2.3.4:99999': port 99999 is out of range (1-65535)"
    assert info.value.exit_code == 2


@pytest.mark.parametrize("name", ["", " ", "\t\n"])
def test_blank_context_name_is_refused(name):
    with pytest.raises(UsageError, match="NAME must not be empty or only whitespace"):
        tc.check_context_name(name, "NAME")


def test_context_name_with_control_character_is_refused():
    with pytest.raises(UsageError, match=r"NAME 'a\\x1bb' contains a control character"):
        tc.check_context_name("a\x1bb", "NAME")
    tc.check_context_name("my cluster-1", "NAME")  # negative control: inner spaces are fine


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (bytes(range(256)) * 4, "not a text file (contains NUL bytes)"),
        (b"context: a\x00\xff\xfe\n", "not a text file (contains NUL bytes)"),
        (b"context: \xff\xfe\n", "not UTF-8 text (bad byte at offset 9)"),
    ],
)
def test_binary_file_is_refused_naming_it(tmp_path, data, message):
    from libtalos.errors import TalosIOError

    path = tmp_path / "config"
    path.write_bytes(data)
    with pytest.raises(TalosIOError) as info:
        tc.load(path)
    assert str(info.value) == f"{path}: {message}"
    assert info.value.exit_code == 1


def test_random_bytes_are_refused_naming_the_file(tmp_path):
    import random

    from libtalos.errors import TalosIOError

    path = tmp_path / "config"
    rng = random.Random(7)
    for _ in range(20):
        path.write_bytes(rng.randbytes(rng.randrange(64, 4096)))
        with pytest.raises(TalosIOError, match=f"^{path}: not "):
            tc.load(path)
