"""Config patches: RFC 6902 operations and strategic merge."""

import pytest

from libtalos.errors import ValidationError
from libtalos.patch import PatchError, apply_patch, read_patch, read_patch_groups

DOC = {"machine": {"install": {"disk": "/dev/sda"}, "certSANs": ["a"]}, "cluster": {}}


def test_json_patch_ops_and_input_untouched():
    ops = [
        {"op": "replace", "path": "/machine/install/disk", "value": "/dev/vda"},
        {"op": "add", "path": "/machine/certSANs/-", "value": "b"},
        {"op": "add", "path": "/machine/certSANs/0", "value": "z"},
        {"op": "copy", "from": "/machine/install", "path": "/cluster/install"},
        {"op": "move", "from": "/cluster/install", "path": "/cluster/moved"},
        {"op": "test", "path": "/machine/certSANs/1", "value": "a"},
        {"op": "remove", "path": "/machine/certSANs/2"},
    ]
    out = apply_patch(DOC, ops)
    assert out == {
        "machine": {"install": {"disk": "/dev/vda"}, "certSANs": ["z", "a"]},
        "cluster": {"moved": {"disk": "/dev/vda"}},
    }
    assert DOC["machine"]["install"]["disk"] == "/dev/sda"


@pytest.mark.parametrize(
    ("ops", "message"),
    [
        ([{"op": "remove", "path": "/machine/nope"}], "path does not exist"),
        ([{"op": "replace", "path": "/machine/certSANs/5", "value": 1}], "out of range"),
        ([{"op": "test", "path": "/machine/install/disk", "value": "x"}], "test failed"),
        ([{"op": "move", "from": "/machine", "path": "/machine/x"}], "into itself"),
    ],
)
def test_json_patch_failures(ops, message):
    with pytest.raises(PatchError, match=message):
        apply_patch(DOC, ops)


@pytest.mark.parametrize(
    "ops",
    [
        [{"op": "frob", "path": "/a"}],
        [{"op": "add", "path": "a", "value": 1}],
        [{"op": "add", "path": "/a"}],
    ],
)
def test_json_patch_malformed(ops):
    with pytest.raises(ValidationError):
        apply_patch(DOC, ops)


def test_strategic_merge():
    out = apply_patch(DOC, {"machine": {"install": {"wipe": True}, "certSANs": ["x"]}})
    assert out["machine"] == {"install": {"disk": "/dev/sda", "wipe": True}, "certSANs": ["x"]}


def test_read_patch_inline_and_file(tmp_path):
    assert read_patch('[{"op": "remove", "path": "/a"}]')[0] == [{"op": "remove", "path": "/a"}]
    f = tmp_path / "p.yaml"
    f.write_text("machine:\n    type: controlplane\n")
    assert read_patch(f"@{f}") == ({"machine": {"type": "controlplane"}}, str(f))


def _stdin(monkeypatch, text):
    import io

    monkeypatch.setattr("sys.stdin", io.TextIOWrapper(io.BytesIO(text.encode())))


def test_read_patch_at_dash_reads_stdin_not_a_file_named_dash(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "-").write_text("machine:\n    type: worker\n")  # must not be read
    _stdin(monkeypatch, "machine:\n    type: controlplane\n")
    assert read_patch("@-") == ({"machine": {"type": "controlplane"}}, "<stdin>")


def test_read_patch_at_dash_refused_when_stdin_is_the_input(monkeypatch):
    from libtalos.errors import ExitCode, UsageError

    _stdin(monkeypatch, "machine: {}\n")
    with pytest.raises(UsageError) as info:
        read_patch("@-", stdin_taken=True, option="--patch")
    assert info.value.exit_code == ExitCode.USAGE
    assert str(info.value).startswith("--patch @-: stdin is already the input")
    import sys

    assert sys.stdin.read() == "machine: {}\n"  # refused before anything was read


def test_read_patch_groups_allow_one_at_dash_in_all(monkeypatch, tmp_path):
    from libtalos.errors import UsageError

    f = tmp_path / "p.yaml"
    f.write_text("cluster: {}\n")
    _stdin(monkeypatch, "machine: {}\n")
    common, worker = read_patch_groups([f"@{f}"], ["@-", "{debug: true}"])
    assert common == [({"cluster": {}}, str(f))]
    assert worker == [({"machine": {}}, "<stdin>"), ({"debug": True}, "--config-patch")]
    _stdin(monkeypatch, "machine: {}\n")
    with pytest.raises(UsageError, match=r"--config-patch @-: given 2 times, but stdin can be"):
        read_patch_groups(["@-"], None, ["@-"])
    assert read_patch_groups(None, []) == [[], []]
