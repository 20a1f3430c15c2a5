"""Sequences of phases of tasks, logged to the console the way Talos logs them.

``[talos] boot sequence: 6 phase(s)``, ``[talos] phase mountState (1/6): 1 tasks(s)``,
``[talos] task mountState (1/1): starting`` ... ``done, 1.2ms``. A task that raises stops the
sequence; the caller decides what a failure means (fatal at boot, logged elsewhere).

With an :class:`~talos_init.events.EventRing`, the sequence, each phase and each task publish
START and STOP events, and a failed sequence a NOOP event carrying the error, as Talos's
controller does (docs/talos-facts.md#runtime-events).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from talos_init.events import EventRing, PhaseEvent, SequenceEvent, TaskEvent
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
    def __init__(self, console: Console, events: EventRing | None = None) -> None:
        self.console = console
        self.events = events
        self.current: str | None = None  # the running sequence, for the API's status

    def _publish(self, payload: SequenceEvent | PhaseEvent | TaskEvent) -> None:
        if self.events is not None:
            self.events.publish(payload)

    async def run(self, name: str, phases: Sequence[Phase]) -> None:
        self.current = name
        self._publish(SequenceEvent(name, "START"))
        try:
            await self._run(name, phases)
        except BaseException as exc:
            self._publish(SequenceEvent(name, "STOP"))
            if isinstance(exc, Exception):
                reason = str(exc) if isinstance(exc, TaskFailedError) else _reason(exc)
                self._publish(SequenceEvent(name, "NOOP", "FATAL", f"sequence failed: {reason}"))
            raise
        else:
            self._publish(SequenceEvent(name, "STOP"))
        finally:
            self.current = None

    async def _run(self, name: str, phases: Sequence[Phase]) -> None:
        log = self.console.log
        start = time.monotonic()
        log(f"{name} sequence: {len(phases)} phase(s)")
        for i, phase in enumerate(phases, 1):
            p_start = time.monotonic()
            log(f"phase {phase.name} ({i}/{len(phases)}): {len(phase.tasks)} tasks(s)")
            self._publish(PhaseEvent(phase.name, "START"))
            try:
                for j, (task_name, func) in enumerate(phase.tasks, 1):
                    t_start = time.monotonic()
                    where = f"task {task_name} ({j}/{len(phase.tasks)})"
                    log(f"{where}: starting")
                    self._publish(TaskEvent(task_name, "START"))
                    try:
                        await func()
                    except Exception as exc:
                        log(f"{where}: failed, {_reason(exc)}")
                        raise TaskFailedError(name, phase.name, task_name, exc) from exc
                    finally:
                        self._publish(TaskEvent(task_name, "STOP"))
                    log(f"{where}: done, {duration(time.monotonic() - t_start)}")
            finally:
                self._publish(PhaseEvent(phase.name, "STOP"))
            log(
                f"phase {phase.name} ({i}/{len(phases)}): done, "
                f"{duration(time.monotonic() - p_start)}"
            )
        log(f"{name} sequence: done: {duration(time.monotonic() - start)}")
