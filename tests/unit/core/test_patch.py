"""Config patches: RFC 6902 operations and strategic merge."""

import pytest

from libtalos.errors import ValidationError
from libtalos.patch import PatchError, apply_patch, read_patch

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
