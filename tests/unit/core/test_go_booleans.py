"""Go-style boolean flags (``--wait=false``, ``--persist=true``), as talosctl's docs write them,
are accepted by every tool through one rewrite in libtalos.cli."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import pytest
import typer
import typer.main

from libtalos.cli import GO_FALSE, GO_TRUE, go_booleans, run


def _app() -> typer.Typer:
    app = typer.Typer()
    seen: dict[str, object] = {}

    @app.callback()
    def top(debug: Annotated[bool, typer.Option("--debug")] = False) -> None:
        seen["debug"] = debug

    @app.command()
    def create(
        wait: Annotated[bool, typer.Option(help="wait")] = True,
        force: Annotated[bool, typer.Option("--force")] = False,
        keep: Annotated[bool, typer.Option("--keep")] = True,
        name: Annotated[str, typer.Option()] = "x",
    ) -> None:
        seen.update(wait=wait, force=force, keep=keep, name=name)

    app.seen = seen  # type: ignore[attr-defined]
    return app


@pytest.mark.parametrize("value", sorted(GO_TRUE))
def test_true_forms(value: str) -> None:
    app = _app()
    assert run(app, ["--debug=" + value, "create", f"--force={value}"], prog="t") == 0
    assert app.seen == {"debug": True, "wait": True, "force": True, "keep": True, "name": "x"}  # type: ignore[attr-defined]


@pytest.mark.parametrize("value", sorted(GO_FALSE))
def test_false_forms(value: str) -> None:
    app = _app()
    assert run(app, ["create", f"--wait={value}", f"--force={value}"], prog="t") == 0
    assert app.seen["wait"] is False and app.seen["force"] is False  # type: ignore[attr-defined]


def test_off_form_given_a_value_and_other_options_untouched() -> None:
    app = _app()
    assert run(app, ["create", "--no-wait=false", "--name=a=b"], prog="t") == 0
    assert app.seen["wait"] is True and app.seen["name"] == "a=b"  # type: ignore[attr-defined]
    command = typer.main.get_command(_app())
    # after --, and for options that are not booleans, nothing changes
    assert go_booleans(command, ["create", "--name=true", "--", "--wait=false"]) == [
        "create",
        "--name=true",
        "--",
        "--wait=false",
    ]


def test_refusals_name_the_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(_app(), ["create", "--wait=maybe"], prog="t") == 2
    assert "--wait: expected true or false, got 'maybe'" in capsys.readouterr().err
    # a flag that is on by default and has no off form cannot be turned off
    assert run(_app(), ["create", "--keep=false"], prog="t") == 2
    assert "--keep cannot be turned off" in capsys.readouterr().err


def test_negative_control_click_alone_refuses_them(capsys: pytest.CaptureFixture[str]) -> None:
    command = typer.main.get_command(_app())
    with pytest.raises(Exception, match="does not take a value"):
        command.main(args=["create", "--wait=false"], prog_name="t", standalone_mode=False)


def test_the_docs_flags_through_the_real_tools(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from talos_gen.cli import main as gen
    from talosctl.cli import main as talosctl

    for value in ("false", "true"):
        out = tmp_path / value
        argv = ["gen", "config", "demo", "https://10.5.0.2:6443", f"--persist={value}"]
        assert talosctl([*argv, "-o", str(out)]) == 0
        assert f"persist: {value}" in (out / "controlplane.yaml").read_text()
    assert gen(["config", "demo", "https://10.5.0.2:6443", "--persist=nope", "-o", "x"]) == 2
    assert "--persist: expected true or false" in capsys.readouterr().err
    assert talosctl(["version", "--client=true"]) == 0
    assert "Client:" in capsys.readouterr().out


def test_talos_luks_keeps_its_exit_code_for_bad_values(capsys: pytest.CaptureFixture[str]) -> None:
    from talos_luks.cli import main as luks

    assert luks(["open", "--readonly=maybe", "x", "y"]) == 1  # cryptsetup's "wrong parameters"
    assert "--readonly: expected true or false" in capsys.readouterr().err
