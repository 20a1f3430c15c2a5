"""Sequences of phases of tasks, logged to the console the way Talos logs them.

``[talos] boot sequence: 6 phase(s)``, ``[talos] phase mountState (1/6): 1 tasks(s)``,
``[talos] task mountState (1/1): starting`` ... ``done, 1.2ms``. A task that raises stops the
sequence; the caller decides what a failure means (fatal at boot, logged elsewhere).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from talos_init.logring import Console

Task = tuple[str, Callable[[], Awaitable[None]]]


@dataclass(frozen=True)
class Phase:
    name: str
    tasks: Sequence[Task]


class TaskFailedError(Exception):
    """A task of a sequence failed; carries the sequence, phase and task names."""

    def __init__(self, sequence: str, phase: str, task: str, cause: BaseException) -> None:
        super().__init__(f"{sequence} sequence: phase {phase}: task {task}: {_reason(cause)}")
        self.sequence = sequence
        self.phase = phase
        self.task = task
        self.cause = cause


def _reason(exc: BaseException) -> str:
    # Our own errors carry user-facing messages; anything else is named by type only.
    from libtalos.errors import TalosError

    return exc.message if isinstance(exc, TalosError) else f"internal error ({type(exc).__name__})"


def duration(seconds: float) -> str:
    """Go-like short duration: 850µs, 12.3ms, 1.52s."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f}µs"
    if seconds < 1:
        return f"{seconds * 1e3:.3g}ms"
    return f"{seconds:.3g}s"


class Sequencer:
    def __init__(self, console: Console) -> None:
        self.console = console
        self.current: str | None = None  # the running sequence, for the API's status

    async def run(self, name: str, phases: Sequence[Phase]) -> None:
        log = self.console.log
        self.current = name
        start = time.monotonic()
        log(f"{name} sequence: {len(phases)} phase(s)")
        try:
            for i, phase in enumerate(phases, 1):
                p_start = time.monotonic()
                log(f"phase {phase.name} ({i}/{len(phases)}): {len(phase.tasks)} tasks(s)")
                for j, (task_name, func) in enumerate(phase.tasks, 1):
                    t_start = time.monotonic()
                    where = f"task {task_name} ({j}/{len(phase.tasks)})"
                    log(f"{where}: starting")
                    try:
                        await func()
                    except Exception as exc:
                        log(f"{where}: failed, {_reason(exc)}")
                        raise TaskFailedError(name, phase.name, task_name, exc) from exc
                    log(f"{where}: done, {duration(time.monotonic() - t_start)}")
                log(
                    f"phase {phase.name} ({i}/{len(phases)}): done, "
                    f"{duration(time.monotonic() - p_start)}"
                )
            log(f"{name} sequence: done: {duration(time.monotonic() - start)}")
        finally:
            self.current = None
