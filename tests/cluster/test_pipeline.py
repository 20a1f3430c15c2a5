"""create's steps, their order and their phases (pure: nothing is run)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from talos_cluster import pipeline
from talos_cluster.options import CreateOptions
from talos_cluster.plan import make_plan


def test_steps_in_order() -> None:
    # nothing is made before the cluster directory; the talosconfig is merged before the nodes
    # start (bootstrap reads it); the kubeconfig once the cluster is up, outside the roll-back
    assert [s.name for s in pipeline.PREPARE] == [
        "check the cluster is new",
        "generate configs",
        "check the network",
        "make the cluster directory",
    ]
    assert [s.name for s in pipeline.BUILD] == [
        "save the record",
        "merge talosconfig",
        "write configs",
        "create the network",
        "start nodes",
        "wait for nodes",
        "apply configs",
        "bootstrap",
    ]
    assert [s.name for s in pipeline.FINISH] == ["merge kubeconfig", "report"]


def _options(tmp_path: Path) -> CreateOptions:
    plan = make_plan(
        name="c1",
        cidr="10.5.0.0/24",
        masters=1,
        workers=1,
        cpus=1,
        memory_mib=64,
        cpus_workers=1,
        memory_workers_mib=64,
    )
    return CreateOptions(
        plan=plan,
        state_root=tmp_path,
        wait=True,
        timeout=60.0,
        kubernetes_version=None,
        inject=True,
        apply=False,
        kubeconfig=True,
        talosconfig=tmp_path / "tc",
        stand_in=None,
        controlplane_patches=(),
        join_patches=(),
        kube_path=None,
    )


def test_options_are_frozen(tmp_path: Path) -> None:
    opts = _options(tmp_path)
    assert opts.cluster_dir == tmp_path / "c1"
    with pytest.raises(dataclasses.FrozenInstanceError):
        opts.wait = False  # type: ignore[misc]


def test_each_run_has_its_own_interrupt_flag(tmp_path: Path) -> None:
    """No state shared between two creates of one process (tests run many)."""
    from talos_cluster.runstate import CreateRun

    opts = _options(tmp_path)
    first, second = CreateRun.start(opts, "net:[1]"), CreateRun.start(opts, "net:[1]")
    first.interrupts.seen = True
    assert not second.interrupts.seen
    assert first.record.bridge_netns == "net:[1]" and first.record.dir == str(tmp_path / "c1")
