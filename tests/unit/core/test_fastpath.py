"""libtalos.fastpath (command lines run without Typer) and the exit-code table of libtalos.cli.run."""

from __future__ import annotations

from typing import Any

import pytest
import typer

from libtalos.cli import run, version_option
from libtalos.errors import UsageError
from libtalos.fastpath import FLAG, OFF, Command, call, parse
from libtalos.fastpath import run as run_fast

SEEN: list[dict[str, Any]] = []


def _job(**values: Any) -> None:
    SEEN.append(values)


TABLE = {
    "copy": Command(
        _job,
        ("src", "dst"),
        {
            "-n": ("count", int),
            "--count": ("count", int),
            "--ratio": ("ratio", float),
            "--force": ("force", FLAG),
            "--no-sync": ("sync", OFF),
        },
        defaults={"sync": True},
    ),
    "need": Command(_job, options={"--name": ("name", str)}, required=("name",)),
}


@pytest.mark.parametrize(
    ("argv", "values"),
    [
        (["copy", "a", "b"], {"src": "a", "dst": "b", "sync": True}),
        (["copy", "-", "b", "-n", "3"], {"src": "-", "dst": "b", "count": 3, "sync": True}),
        (
            ["copy", "--count=3", "a", "b", "--no-sync"],
            {"src": "a", "dst": "b", "count": 3, "sync": False},
        ),
        (
            ["copy", "a", "b", "--force", "--ratio", "0.5"],
            {"src": "a", "dst": "b", "force": True, "ratio": 0.5, "sync": True},
        ),
        (["need", "--name", "x"], {"name": "x"}),
    ],
)
def test_fast_forms(argv: list[str], values: dict[str, Any]) -> None:
    parsed = parse(TABLE, argv)
    assert parsed is not None and parsed[0] is TABLE[argv[0]] and parsed[1] == values


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["--help"],
        ["other"],
        ["copy", "a"],
        ["copy", "a", "b", "c"],
        ["copy", "a", "b", "--help"],
        ["copy", "a", "b", "-n", "1", "--count", "2"],
        ["copy", "a", "b", "-n"],
        ["copy", "a", "b", "-n", "-1"],
        ["copy", "a", "b", "-n=1"],
        ["copy", "a", "b", "-n", "x"],
        ["copy", "a", "b", "--force=yes"],
        ["copy", "--", "a", "b"],
        ["need"],
        ["need", "--name", "--other"],
    ],
)
def test_other_forms_are_not_fast(argv: list[str]) -> None:
    assert parse(TABLE, argv) is None
    assert run_fast(TABLE, argv) is None


def test_a_single_command_table() -> None:
    command = Command(_job, options={"--mode": ("mode", str)}, required=("mode",))
    assert parse(command, ["--mode", "m"]) == (command, {"mode": "m"})
    assert parse(command, ["sub", "--mode", "m"]) is None


def test_run_maps_results_and_exceptions_as_the_typer_path(
    capsys: pytest.CaptureFixture[str],
) -> None:
    SEEN.clear()
    steps: list[str] = []
    assert run_fast(TABLE, ["copy", "a", "b"], setup=lambda: steps.append("setup")) == 0
    assert steps == ["setup"] and SEEN == [{"src": "a", "dst": "b", "sync": True}]
    assert call(lambda: 7) == 7

    def usage() -> None:
        raise UsageError("--count: bad", hint="try 1")

    def exits(code: object) -> Any:
        def job() -> None:
            raise SystemExit(code)

        return job

    assert call(usage) == 2
    assert capsys.readouterr().err == "error: --count: bad\nhint: try 1\n"
    assert (call(exits(5)), call(exits("text"))) == (5, 1)
    assert call(lambda: {}["key"]) == 1
    assert "internal error (KeyError)" in capsys.readouterr().err


def _app() -> typer.Typer:
    app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

    @app.callback()
    def _root(version: bool = version_option("demo", "1.2")) -> None:
        pass

    @app.command()
    def go(count: int = 1) -> None:
        pass

    return app


def test_runner_takes_the_tools_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(_app(), ["go", "--count", "x"], prog="demo") == 2
    assert "--count" in capsys.readouterr().err
    assert run(_app(), ["go", "--count", "x"], prog="demo", exit_codes={"usage": 1}) == 1
    assert "--count" in capsys.readouterr().err
    assert run(_app(), ["go"], prog="demo", exit_codes={"usage": 1}) == 0


def test_version_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(_app(), ["--version", "go"], prog="demo") == 0
    assert capsys.readouterr().out == "demo 1.2\n"
