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
