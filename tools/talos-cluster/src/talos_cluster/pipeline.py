"""``create`` as three lists of named steps, each a function of the options and the run.

- :data:`PREPARE`: checks and generation; nothing is made until the last one makes the cluster
  directory, so a failure here has nothing to undo.
- :data:`BUILD`: the cluster itself, every resource recorded before it is made. A failure (a
  node that exits, a wait that times out, a failed bootstrap, an unexpected error) removes what
  was made (:func:`talos_cluster.rollback.roll_back`); Ctrl-C keeps it, recorded for
  ``destroy``.
- :data:`FINISH`: once the cluster is up; a failure here (the kubeconfig merge) leaves it up.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from talos_cluster import configs, steps
from talos_cluster.netlab import current_netns
from talos_cluster.options import CreateOptions
from talos_cluster.rollback import roll_back
from talos_cluster.runstate import CreateRun, progress


@dataclass(frozen=True)
class Step:
    name: str
    run: Callable[[CreateOptions, CreateRun], None]


PREPARE: tuple[Step, ...] = (
    Step("check the cluster is new", steps.check_new),
    Step("generate configs", configs.generate_configs),
    Step("check the network", steps.check_network),
    Step("make the cluster directory", steps.make_cluster_dir),
)
BUILD: tuple[Step, ...] = (
    Step("save the record", steps.save_record),
    Step("merge talosconfig", configs.merge_talosconfig),
    Step("write configs", configs.write_configs),
    Step("create the network", steps.create_network),
    Step("start nodes", steps.start_nodes),
    Step("wait for nodes", steps.wait_for_nodes),
    Step("apply configs", steps.apply_configs),
    Step("bootstrap", steps.bootstrap),
)
FINISH: tuple[Step, ...] = (
    Step("merge kubeconfig", configs.merge_kubeconfig),
    Step("report", steps.report),
)


def run_create(opts: CreateOptions) -> int:
    """Run every step of the provisioner ``opts`` names; returns the exit code (0), or raises
    what stopped it."""
    prepare, build, finish = PREPARE, BUILD, FINISH
    if opts.qemu is not None:
        from talos_cluster.qemu import provision

        prepare, build, finish = provision.PREPARE, provision.BUILD, provision.FINISH
    run = CreateRun.start(opts, current_netns())
    for step in prepare:
        step.run(opts, run)
    previous = run.interrupts.install()
    try:
        for step in build:
            step.run(opts, run)
            run.interrupts.check()
    except KeyboardInterrupt:
        progress(
            f"interrupted: what was made is recorded in {run.record.path()}; "
            f"remove it with: talos-cluster destroy --name {opts.plan.name}"
        )
        raise
    except Exception:
        roll_back(run)
        raise
    finally:
        run.interrupts.restore(previous)
    for step in finish:
        step.run(opts, run)
    return 0
