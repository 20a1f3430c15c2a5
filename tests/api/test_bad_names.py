"""Names from a request that cannot be what they claim: a service id or an etcd member name that
is a path (``../../etc/passwd``), 10 000 characters, or holds a NUL, is refused with
INVALID_ARGUMENT and a message naming it, before the node looks anything up; a real id
(negative control) is served."""

from __future__ import annotations

import pytest

from talos_apply.cli import main

BAD = ("../../etc/passwd", "x" * 10_000, "etcd\0")


@pytest.fixture
def tc(configured, talosconfig_for):
    s, _node = configured("init", hostname="n1")
    return ["--talosconfig", str(talosconfig_for([s.endpoint], [s.endpoint]))]


@pytest.mark.parametrize("bad", BAD, ids=["path", "long", "nul"])
@pytest.mark.parametrize("command", [["logs"], ["service", "{id}", "restart"]])
def test_bad_service_id_is_refused(tc, capsys, bad, command):
    argv = [w.replace("{id}", bad) for w in command]
    if argv == ["logs"]:
        argv.append(bad)
    assert main([*tc, *argv]) == 1
    err = capsys.readouterr().err
    assert "InvalidArgument" in err or "INVALID_ARGUMENT" in err, err
    assert "service id" in err, err
    assert len(err) < 2_000  # the 10 000 characters are not echoed back


def test_known_service_id_is_served(tc, capsys):
    assert main([*tc, "service", "etcd"]) == 0
    assert "etcd" in capsys.readouterr().out


@pytest.mark.parametrize("bad", BAD, ids=["path", "long", "nul"])
def test_bad_member_name_is_refused(tc, capsys, bad):
    assert main([*tc, "etcd", "remove-member", bad]) == 1
    err = capsys.readouterr().err
    assert "InvalidArgument" in err or "INVALID_ARGUMENT" in err, err
    assert "member" in err and len(err) < 2_000, err
