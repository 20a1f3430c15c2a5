"""``edit machineconfig`` and ``patch machineconfig``: the running config read with Read,
changed by a scripted editor (or a JSON patch), applied with ApplyConfiguration."""

from __future__ import annotations

import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from talos_apply.cli import main
from talos_init.api.files import FileAccess

# The editor: each run takes the next action from ACTIONS, records what it was given (text,
# mode of the file) in SEEN, and rewrites the file.
EDITOR = r"""
import json, os, stat, sys, yaml
path = sys.argv[-1]
state = os.environ["EDIT_STATE"]
with open(state) as fh:
    todo = json.load(fh)
action = todo["actions"].pop(0)
text = open(path).read()
todo["seen"].append({"text": text, "mode": stat.S_IMODE(os.stat(path).st_mode), "path": path})
with open(state, "w") as fh:
    json.dump(todo, fh)
body = "".join(l for l in text.splitlines(True) if not l.startswith("#"))
data = yaml.safe_load(body)
if action == "rename":
    data["cluster"]["clusterName"] = "renamed"
elif action == "invalid":
    data["machine"]["bogusKey"] = 1
elif action == "fix":
    data["machine"].pop("bogusKey", None)
    data["cluster"]["clusterName"] = "fixed"
elif action == "comment-only":
    open(path, "w").write("# just a comment\n" + text)
    sys.exit(0)
elif action == "empty":
    open(path, "w").write("# nothing\n\n")
    sys.exit(0)
elif action == "same":
    sys.exit(0)
elif action == "fail":
    sys.exit(3)
open(path, "w").write(yaml.safe_dump(data))
"""


@pytest.fixture
def env(configured, talosconfig_for, tmp_path: Path, monkeypatch):
    s, node = configured("init", hostname="n1")
    root = tmp_path / "root"
    (root / "system/state").mkdir(parents=True)
    config_file = root / "system/state/config.yaml"
    config_file.write_text(node.config_text())
    node.file_access = lambda: FileAccess(str(root), lambda _line: None)
    applied = node.apply_configuration

    async def apply_and_persist(text: str, mode: Any, try_timeout: Any) -> Any:
        done = await applied(text, mode, try_timeout)
        config_file.write_text(node.config_text())
        return done

    node.apply_configuration = apply_and_persist
    script = tmp_path / "editor.py"
    script.write_text(EDITOR)
    state = tmp_path / "state.json"
    monkeypatch.setenv("EDIT_STATE", str(state))
    monkeypatch.setenv("TALOS_EDITOR", f"{shlex.quote(sys.executable)} {shlex.quote(str(script))}")
    tc = talosconfig_for([s.endpoint], [s.endpoint])

    def edit(actions: list[str], *flags: str) -> tuple[int, list[dict[str, Any]]]:
        state.write_text(json.dumps({"actions": actions, "seen": []}))
        code = main(["--talosconfig", str(tc), "edit", "machineconfig", *flags])
        return code, json.loads(state.read_text())["seen"]

    return s, node, edit, ["--talosconfig", str(tc)]


def _cluster_name(node: Any) -> str:
    return str(yaml.safe_load(node.config_text())["cluster"]["clusterName"])


def test_edit_applies_the_change(env, capsys):
    s, node, edit, _tc = env
    code, seen = edit(["rename"], "--immediate")
    assert code == 0, capsys.readouterr().err
    assert _cluster_name(node) == "renamed"
    assert node.actions[-1][1].name == "NO_REBOOT"
    assert seen[0]["text"].startswith(f"# Editing machineconfig/v1alpha1 at node {s.endpoint}\n")
    assert seen[0]["mode"] == 0o600
    assert not os.path.exists(seen[0]["path"])  # the temporary file is removed
    assert "no-reboot" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("action", "message"),
    [
        ("same", "Apply was skipped: no changes detected."),
        ("comment-only", "Apply was skipped: no changes detected."),
        ("empty", "Apply was skipped: empty file."),
    ],
)
def test_edit_without_changes_applies_nothing(env, capsys, action, message):
    _s, node, edit, _tc = env
    code, _seen = edit([action])
    assert code == 0
    assert capsys.readouterr().out == message + "\n"
    assert node.actions == []


def test_invalid_edit_is_reopened_with_the_errors(env, capsys):
    _s, node, edit, _tc = env
    code, seen = edit(["invalid", "fix"], "--mode", "no-reboot")
    assert code == 0, capsys.readouterr().err
    assert len(seen) == 2
    second = seen[1]["text"].splitlines()
    assert second[0].startswith("# Editing machineconfig/v1alpha1")
    errors = [line for line in second[1:] if line.startswith("#")]
    assert any("bogusKey" in line for line in errors), second[:6]
    assert "bogusKey: 1" in seen[1]["text"]  # the edit itself is kept, below the errors
    assert _cluster_name(node) == "fixed"
    assert [a[0] for a in node.actions] == ["apply"]  # the invalid one never reached the node


def test_edit_left_invalid_gives_up(env, capsys):
    _s, node, edit, _tc = env
    code, seen = edit(["invalid", "same"])
    assert code == 1 and len(seen) == 2
    assert "did not change after the error" in capsys.readouterr().err
    assert node.actions == []


def test_edit_refuses_other_resources_and_failed_editor(env, capsys):
    _s, node, edit, tc = env
    assert main([*tc, "edit", "services"]) == 2
    assert "only the machineconfig resource" in capsys.readouterr().err
    code, _seen = edit(["fail"])
    assert code == 1 and "exited with 3" in capsys.readouterr().err
    assert node.actions == []


def test_patch_json6902(env, capsys, tmp_path):
    _s, node, _edit, tc = env
    op = '[{"op": "replace", "path": "/cluster/clusterName", "value": "patched"}]'
    assert main([*tc, "patch", "machineconfig", "-p", op, "--immediate"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("patched machineconfig at the node ")
    assert _cluster_name(node) == "patched"
    patch_file = tmp_path / "p.yaml"
    patch_file.write_text(op)  # the same again: nothing to do
    assert main([*tc, "patch", "mc", "-p", f"@{patch_file}"]) == 0
    assert capsys.readouterr().out == "Apply was skipped: no changes detected.\n"
    assert main([*tc, "patch", "mc", "--patch-file", str(patch_file)]) == 0
    assert len(node.actions) == 1


def test_patch_refusals(env, capsys):
    _s, node, _edit, tc = env
    bad = '[{"op": "remove", "path": "/cluster/nope"}]'
    assert main([*tc, "patch", "machineconfig", "-p", bad]) == 1
    assert "/cluster/nope" in capsys.readouterr().err
    unknown = '[{"op": "add", "path": "/machine/bogusKey", "value": 1}]'
    assert main([*tc, "patch", "machineconfig", "-p", unknown, "--immediate"]) == 1
    assert "bogusKey" in capsys.readouterr().err
    assert main([*tc, "patch", "machineconfig"]) == 2
    assert "--patch" in capsys.readouterr().err
    assert node.actions == []
