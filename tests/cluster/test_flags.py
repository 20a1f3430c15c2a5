"""Bad command lines: exit 2, a message naming the flag, and nothing created."""

from __future__ import annotations

from pathlib import Path

import pytest
from talos_cluster.cli import main


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cidr", "10.5.0.0/33"], "--cidr: '10.5.0.0/33' is not a network"),
        (["--cidr", "nonsense"], "--cidr"),
        (["--masters", "0"], "--masters: a cluster needs at least one"),
        (["--controlplanes", "0"], "--masters: a cluster needs at least one"),
        (["--workers", "-1"], "--workers: must not be negative"),
        (["--cidr", "10.5.0.0/30", "--workers", "1"], "room for 1 nodes, 2 were asked for"),
        (["--name", "Bad_Name"], "--name: 'Bad_Name' is not a valid cluster name"),
        (["--name", "x" * 41], "is not a valid cluster name"),
        (["--wait-timeout", "soon"], "--wait-timeout: 'soon' is not a duration"),
        (["--wait-timeout", "0"], "--wait-timeout: must be greater than zero"),
        (["--cpus", "0"], "--cpus: must be greater than zero"),
        (["--memory", "0"], "--memory: must be greater than zero"),
        (["--skip-injecting-config", "--with-apply-config"], "exclude each other"),
        (["--node-command", ""], "--node-command: empty"),
        (["--bogus"], "No such option"),
    ],
)
def test_bad_create_flags(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    state = tmp_path / "clusters"
    code = main(["create", "--state-dir", str(state), "--talosconfig", str(tmp_path / "tc"), *args])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not state.exists()
    assert not (tmp_path / "tc").exists()


def test_bad_name_for_destroy_and_show(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["destroy", "--name", "../etc", "--state-dir", str(tmp_path)]) == 2
    assert main(["show", "--name", "A", "--state-dir", str(tmp_path)]) == 2
    assert "not a valid cluster name" in capsys.readouterr().err


def test_destroy_of_nothing_is_fine(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["destroy", "--name", "none", "--state-dir", str(tmp_path)]) == 0
    assert "nothing to destroy" in capsys.readouterr().err


def test_corrupt_record_is_reported(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "c1").mkdir()
    (tmp_path / "c1" / "cluster.yaml").write_text("kind: Something\n")
    assert main(["destroy", "--name", "c1", "--state-dir", str(tmp_path)]) == 1
    assert "not a talos-cluster record" in capsys.readouterr().err


def test_version_and_help() -> None:
    assert main(["--version"]) == 0
    assert main(["--help"]) == 0
