"""Bootstrap the first control-plane node, wait for etcd on every control-plane node, then for
the machine API on every node (a worker serves it once trustd has issued its certificate).

Both go through the machine API client (talos-apply) run where the cluster's bridge is (this
network namespace, or the cluster's own one with ``--isolated``), so that its packets go only
to the cluster's addresses. This step needs two things from
the other parts: talos-apply installed, and the nodes serving the machine API on port 50000
(talos-init's API server in container mode). When either is missing the step is skipped with
the reason, and the status table shows etcd as ``-``.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import time
from pathlib import Path

from libtalos.errors import TalosError
from talos_cluster import nodes
from talos_cluster.state import ClusterRecord, NodeRecord

# talos-init starts its API server right after the boot sequence (a control plane issues its
# certificate, a worker first asks trustd): bounded by the --wait-timeout, and by this.
API_WAIT = 60.0


def _progress(message: str) -> None:
    sys.stderr.write(f"{message}\n")
    sys.stderr.flush()


# talos-apply's entry point run by this interpreter: its package has no ``__main__``, so
# ``python -m talos_apply`` does not run it
_RUN_TALOS_APPLY = "import sys; from talos_apply.cli import main; sys.exit(main())"


def _talos_apply() -> list[str] | None:
    """The machine API client's command: its console script beside this interpreter (the
    .venv), else its ``main`` run by this interpreter; None when it is not installed."""
    if importlib.util.find_spec("talos_apply") is None:
        return None
    beside = Path(sys.executable).parent / "talos-apply"
    return [str(beside)] if beside.exists() else [sys.executable, "-c", _RUN_TALOS_APPLY]


def _inside(record: ClusterRecord) -> list[str]:
    """The prefix that runs a client where the bridge is: the cluster's own namespace
    (isolated layout), else here (create runs in the namespace it put the bridge in)."""
    if record.layout == "isolated":
        return ["nsenter", f"--net=/run/netns/{record.netns}", "--"]
    return []


def _listens(record: ClusterRecord, n: NodeRecord) -> bool:
    """Whether the node serves the machine API: a socket listening in its namespace (read from
    /proc, no packet sent), or for a VM one that accepts a connection on its address."""
    if record.provisioner == "qemu":
        from talos_cluster.qemu.vm import api_open

        return api_open(n.ip)
    pid1 = nodes.node_pid1(n.pid) if n.pid else None
    return pid1 is not None and nodes.listening(pid1, nodes.API_PORT)


def _serving(record: ClusterRecord, bound: float) -> list[str]:
    """Control-plane nodes not yet listening on the API port after ``bound`` seconds."""
    cps = [n for n in record.nodes if n.role == "controlplane"]
    deadline = time.monotonic() + bound
    while True:
        missing = []
        for n in cps:
            if not _listens(record, n):
                missing.append(n.name)
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(0.1)


def bootstrap(
    record: ClusterRecord, talosconfig: Path, context: str, timeout: float
) -> dict[str, str]:
    """Returns node name -> etcd column for the status table (empty when skipped)."""
    tool = _talos_apply()
    if tool is None:
        _progress("bootstrap: skipped: talos-apply (the machine API client) is not installed")
        return {}
    missing = _serving(record, min(API_WAIT, timeout))
    if missing:
        _progress(
            f"bootstrap: skipped: {', '.join(missing)} do(es) not serve the machine API on "
            f":{nodes.API_PORT} (talos-init's API server is not running in container mode)"
        )
        return {}
    first = next(n for n in record.nodes if n.role == "controlplane")
    base = [*_inside(record), *tool]
    common = ["--talosconfig", str(talosconfig), "--context", context]
    _progress(f"bootstrap: {first.name} ({first.ip})")
    done = subprocess.run(
        [*base, "bootstrap", *common, "--nodes", first.ip],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if done.returncode != 0:
        raise TalosError(f"bootstrap of {first.name} failed: {done.stderr.strip()[-500:]}")
    cps = [n for n in record.nodes if n.role == "controlplane"]
    deadline = time.monotonic() + timeout
    result: dict[str, str] = {}
    while True:
        # every control plane still to report is asked at once (one client process each)
        asked = [
            (
                n,
                subprocess.Popen(
                    [*base, "etcd", "members", *common, "--nodes", n.ip, "-o", "json"],
                    stdout=subprocess.PIPE,
                    stderr=subprocess.DEVNULL,
                    text=True,
                ),
            )
            for n in cps
            if n.name not in result
        ]
        for n, proc in asked:
            try:
                out, _ = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
                continue
            if proc.returncode == 0 and n.name in out:
                result[n.name] = "member"
                _progress(f"  etcd on {n.name}: member")
        if len(result) == len(cps):
            # workers serve the API once trustd has issued their certificate, which they ask
            # for until a control plane answers: create returns when every node can be used
            late = _serving_all(record, max(5.0, deadline - time.monotonic()))
            if late:
                raise TalosError(
                    f"the machine API does not answer after {timeout:g}s on: {', '.join(late)}",
                )
            return result
        if time.monotonic() > deadline:
            waiting = [n for n in cps if n.name not in result]
            raise TalosError(
                f"etcd is not healthy after {timeout:g}s on: "
                + ", ".join(n.name for n in waiting)
                + "".join(_etcd_lines(n.name, Path(n.console)) for n in waiting)
            )
        time.sleep(0.5)


def _etcd_lines(name: str, console: Path, most: int = 6) -> str:
    """The last etcd lines of a node's console, for the message of a node that did not join."""
    try:
        lines = console.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    etcd = [line for line in lines if "etcd" in line][-most:]
    shown = "".join(f"\n    {line[:300]}" for line in etcd) or "\n    (no etcd lines)"
    return f"\n  {name} ({console}):{shown}"


def apply_configs(record: ClusterRecord, configs: dict[str, Path], timeout: float) -> None:
    """``--with-apply-config``: send each node its config with ``apply-config --insecure``:
    ``configs[node name]`` when there is one (the VMs'), else its machine type's."""
    tool = _talos_apply()
    if tool is None:
        raise TalosError("--with-apply-config: talos-apply (the API client) is not installed")
    missing = _serving_all(record, min(API_WAIT, timeout))
    if missing:
        raise TalosError(
            f"--with-apply-config: {', '.join(missing)} do(es) not serve the machine API on "
            f":{nodes.API_PORT} (talos-init's API server is not running in container mode)",
            hint="leave the flag out: configs are then injected with --config",
        )
    for n in record.nodes:
        kind = "controlplane" if n.role == "controlplane" else "worker"
        config = configs.get(n.name) or configs[kind]
        _progress(f"apply-config --insecure to {n.name} ({n.ip})")
        done = subprocess.run(
            [
                *_inside(record),
                *tool,
                "apply-config",
                "--insecure",
                "--nodes",
                n.ip,
                "--file",
                str(config),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        if done.returncode != 0:
            raise TalosError(f"apply-config to {n.name} failed: {done.stderr.strip()[-500:]}")


def _serving_all(record: ClusterRecord, bound: float) -> list[str]:
    deadline = time.monotonic() + bound
    while True:
        missing = [n.name for n in record.nodes if not _listens(record, n)]
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(0.1)
