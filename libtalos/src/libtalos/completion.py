"""Every tool's ``completion bash|zsh|fish`` command: Typer's completion, without its installer.

:func:`libtalos.cli.run` adds :func:`completion` to each tool's command group. It prints
Typer's completion script for the tool; the script runs the tool with
``_TOOL_COMPLETE=complete_SHELL`` (:func:`completion_var`) and the words typed so far, which
Typer answers inside the command's ``main`` before any argument is parsed, so every tool
completes its commands, options and choices with no code of its own. Typer's
``--install-completion`` (which edits the user's shell start-up files) stays off.

Imported only by :func:`libtalos.cli.run`, which has imported Typer already.
"""

from __future__ import annotations

import enum
import os
import sys
from typing import Annotated, Any

import typer
import typer.main


class Shell(enum.StrEnum):
    bash = "bash"
    zsh = "zsh"
    fish = "fish"


def completion_var(prog: str) -> str:
    """The variable Typer's completion scripts set when they ask ``prog`` for completions."""
    return f"_{prog}_COMPLETE".replace("-", "_").upper()


def completion(
    ctx: typer.Context,
    shell: Annotated[Shell, typer.Argument(help="bash, zsh or fish.")],
) -> None:
    """Print shell code completing this tool's commands and options, e.g.
    `source <(talos-pki completion bash)`."""
    from typer._completion_shared import get_completion_script

    prog = ctx.find_root().info_name or ""
    script = get_completion_script(
        prog_name=prog, complete_var=completion_var(prog), shell=shell.value
    )
    sys.stdout.write(script + "\n")


def add_completion_command(command: Any, prog: str) -> None:
    """Give ``command`` (a tool's click group) the ``completion`` command, unless it has one;
    when the tool is being asked for completions, register Typer's shell classes that answer."""
    if not hasattr(command, "add_command") or "completion" in getattr(command, "commands", {}):
        return
    if os.environ.get(completion_var(prog)):
        from typer._completion_classes import completion_init

        completion_init()
    sub = typer.Typer(add_completion=False, pretty_exceptions_enable=False)
    sub.command("completion")(completion)
    command.add_command(typer.main.get_command(sub), "completion")
