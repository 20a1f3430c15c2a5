"""``create --provisioner qemu`` as named steps, and ``destroy`` of a qemu cluster.

The steps reuse the namespace provisioner's where they fit (configs generated and written, the
talosconfig merged, the bridge, bootstrap and etcd wait, the kubeconfig merge, the report) and
add the VMs':

- per node a config of its own (its type's config with ``machine.network.hostname`` set to the
  node's name, so etcd's members are named after the nodes), 0600 in the node's directory;
- the network: each node recorded, then a tap per node on the bridge, the HTTP server on the
  gateway (the installer bundle, and for a kernel-and-initramfs boot the kernel, initramfs,
  per-node iPXE scripts and configs) and dnsmasq (a fixed address per MAC);
- per node a sparse disk of ``--disk`` MiB and QEMU (:mod:`talos_cluster.qemu.vm`);
- the wait, with each node's progress on stderr (booting, maintenance, installing, rebooting,
  configured): a kernel-and-initramfs boot fetches its config (``talos.config=``) and comes up
  configured after its install and reboot; an ISO boot waits in maintenance mode until its
  config is applied over the API (``apply-config --insecure``), then installs and reboots.

Every process and link is recorded before it is made; ``destroy`` (:func:`destroy_vms`) stops
each VM with QMP ``quit`` (SIGKILL when it does not exit), stops dnsmasq and the HTTP server,
deletes the taps and the bridge, then the cluster directory (disks, consoles, configs, record).
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

from libtalos.errors import TalosError
from talos_cluster import configs, steps
from talos_cluster.options import CreateOptions, QemuOptions
from talos_cluster.pipeline import Step
from talos_cluster.plan import veth_name
from talos_cluster.qemu import network, proc, vm
from talos_cluster.runstate import CreateRun, progress
from talos_cluster.state import ClusterRecord, NodeRecord

WAIT_POLL = 0.5
DAEMON_GRACE = 5.0
ACCEL_CACHE = ".accel.json"  # in the state directory: the accelerator probe's answer


def _q(opts: CreateOptions) -> QemuOptions:
    if opts.qemu is None:  # pragma: no cover - the pipeline is chosen by it
        raise RuntimeError("the qemu steps need the qemu options")
    return opts.qemu


def _gateway(record: ClusterRecord) -> str:
    import ipaddress

    return str(ipaddress.IPv4Network(record.cidr).network_address + 1)


def base_url(record: ClusterRecord) -> str:
    return f"http://{_gateway(record)}:{record.http_port}"


# -- PREPARE --------------------------------------------------------------------------------


def check_new(opts: CreateOptions, run: CreateRun) -> None:
    """No record of the cluster yet; the accelerator chosen (KVM when it runs a stock kernel)."""
    from talos_cluster import state

    q, cdir = _q(opts), opts.cluster_dir
    if state.load(cdir) is not None:
        raise TalosError(
            f"cluster {opts.plan.name} exists (state in {cdir})",
            hint=f"talos-cluster destroy --name {opts.plan.name}",
        )
    if q.kernel is None:
        accel: vm.Accel = "tcg"
        progress("accelerator: tcg (no kernel to probe KVM with)")
    else:
        accel = vm.choose_accel(q.kernel, opts.state_root / ACCEL_CACHE)
        progress(f"accelerator: {accel}")
    run.record.accel = accel
    run.record.http_port = q.http_port


# -- BUILD ----------------------------------------------------------------------------------


def write_node_configs(opts: CreateOptions, run: CreateRun) -> None:
    """Each node's config: its type's, with its hostname; 0600 in its directory."""
    from libtalos import config as cfgmod
    from libtalos.fsutil import SECRET_MODE, atomic_write
    from libtalos.patch import patch_config

    cdir = opts.cluster_dir
    for node in opts.plan.nodes:
        kind = "controlplane.yaml" if node.role == "controlplane" else "join.yaml"
        text = str(run.made.files[kind])
        cfg = cfgmod.load(text, kind).config
        patch = ({"machine": {"network": {"hostname": node.name}}}, "hostname")
        mine = cfgmod.encode(patch_config(cfg, [patch], kind))
        ndir = cdir / node.name
        ndir.mkdir(mode=0o700, exist_ok=True)
        atomic_write(ndir / "config.yaml", mine, mode=SECRET_MODE)
        run.configs[node.name] = ndir / "config.yaml"


def create_network(opts: CreateOptions, run: CreateRun) -> None:
    """The nodes recorded; the bridge, a tap per node, the HTTP server and dnsmasq."""
    from talos_cluster import netlab

    p, q, record, cdir = opts.plan, _q(opts), run.record, opts.cluster_dir
    for i, node in enumerate(p.nodes, start=1):
        ndir = cdir / node.name
        record.nodes.append(
            NodeRecord(
                name=node.name,
                role=node.role,
                ip=node.ip,
                netns="",
                dir=str(ndir),
                console=str(ndir / "console.log"),
                tap=veth_name(p.name, node.role, node.index, "shared"),
                mac=vm.mac_address(p.name, i),
                disk=str(ndir / "disk.raw"),
                qmp=str(ndir / "qmp.sock"),
            )
        )
    record.save()
    progress(f"creating bridge {p.bridge} {p.gateway}/{p.prefixlen} in this network namespace")
    netlab.create_bridge(p)
    for n in record.nodes:
        run.interrupts.check()
        network.create_tap(p, n.tap)
    base = base_url(record)
    served: dict[str, str] = {}
    if q.install_bundle is not None:
        served[f"/{network_bundle_name()}"] = str(q.install_bundle)
    hosts = []
    for n in record.nodes:
        boot_url = ""
        if q.boot == "pxe":
            assert q.kernel is not None and q.initrd is not None  # noqa: S101 - make() checked
            served["/vmlinuz"], served["/initramfs.xz"] = str(q.kernel), str(q.initrd)
            cmdline = f"{vm.CMDLINE} talos.hostname={n.name}"
            if opts.inject:
                served[f"/configs/{n.name}.yaml"] = str(run.configs[n.name])
                cmdline += f" talos.config={base}/configs/{n.name}.yaml"
            script = Path(n.dir) / "boot.ipxe"
            script.write_text(network.ipxe_script(base, cmdline))
            served[f"/ipxe/{n.name}.ipxe"] = str(script)
            boot_url = f"{base}/ipxe/{n.name}.ipxe"
        hosts.append(network.DhcpHost(n.mac, n.ip, n.name, boot_url))
    (cdir / "http.json").write_text(json.dumps(served, indent=1) + "\n")
    (cdir / "dhcp-hosts").write_text(network.hosts_file(hosts))
    progress(f"starting the HTTP server on {base} and dnsmasq on {p.bridge}")
    record.http_pid, record.http_start = proc.spawn(
        network.httpd_argv(p.gateway, q.http_port, cdir / "http.json"),
        cdir / "http.log",
        "HTTP server",
    )
    record.save()
    record.dnsmasq_pid, record.dnsmasq_start = proc.spawn(
        network.dnsmasq_argv(p, hosts, cdir), cdir / "dnsmasq.out", "dnsmasq"
    )
    record.save()
    _wait_listening(record)


def network_bundle_name() -> str:
    from talos_cluster.qemu.options import BUNDLE

    return BUNDLE


def _wait_listening(record: ClusterRecord, bound: float = 10.0) -> None:
    """Until the HTTP server accepts connections (the first VM fetches from it in seconds)."""
    import socket

    deadline = time.monotonic() + bound
    while True:
        try:
            with socket.create_connection((_gateway(record), record.http_port), timeout=1):
                return
        except OSError:
            if not proc.alive(record.http_pid, record.http_start):
                raise TalosError(
                    f"the HTTP server exited; see {Path(record.dir) / 'http.log'}"
                ) from None
            if time.monotonic() > deadline:
                raise TalosError(f"the HTTP server does not answer after {bound:g}s") from None
            time.sleep(0.05)


def start_vms(opts: CreateOptions, run: CreateRun) -> None:
    """Per node: its blank sparse disk, its copy of OVMF's variables (UEFI), and QEMU."""
    import shutil

    p, q, record = opts.plan, _q(opts), run.record
    accel: vm.Accel = "kvm" if record.accel == "kvm" else "tcg"
    for node, rec in zip(p.nodes, record.nodes, strict=True):
        run.interrupts.check()
        ndir = Path(rec.dir)
        vm.make_disk(Path(rec.disk), q.disk_mib)
        uefi_vars = None
        if q.uefi:
            uefi_vars = ndir / "OVMF_VARS.fd"
            shutil.copyfile(vm.OVMF_VARS, uefi_vars)
        spec = vm.VmSpec(
            name=node.name,
            accel=accel,
            cpus=q.cpus[0] if node.role == "controlplane" else q.cpus[1],
            memory_mib=node.memory_mib,
            console=Path(rec.console),
            qmp=Path(rec.qmp),
            disk=Path(rec.disk),
            tap=rec.tap,
            mac=rec.mac,
            uuid=vm.node_uuid(p.name, node.name),
            boot=q.boot,
            iso=q.iso,
            uefi_vars=uefi_vars,
        )
        progress(
            f"starting VM {node.name} ({node.role}, {node.ip}, {spec.cpus} vCPU, "
            f"{spec.memory_mib} MiB, disk {q.disk_mib} MiB, {q.boot}, {accel})"
        )
        rec.pid, rec.start_time = proc.spawn(vm.argv(spec), ndir / "qemu.log", node.name)
        record.save()
    record.complete = True
    record.save()


def node_state(n: NodeRecord) -> str:
    """``not started``, ``exited`` (QEMU is gone), else what its console shows."""
    if n.pid == 0:
        return "not started"
    if not proc.alive(n.pid, n.start_time):
        return "exited"
    from talos_cluster.status import tail

    return vm.console_state(tail(Path(n.console), 1 << 20))


def wait_states(run: CreateRun, goal: str, timeout: float) -> None:
    """Until every node is in ``goal``, each change of a node's state on stderr; a VM that
    exits, or a node not there after ``timeout``, is a failure."""
    record = run.record
    progress(f"waiting for {len(record.nodes)} VM(s) to be {goal} (up to {timeout:g}s)")
    deadline = time.monotonic() + timeout
    seen: dict[str, str] = {}
    pending = {n.name for n in record.nodes}
    while pending:
        run.interrupts.check()
        for n in record.nodes:
            if n.name not in pending:
                continue
            st = node_state(n)
            if seen.get(n.name) != st:
                seen[n.name] = st
                progress(f"  {n.name}: {'configured' if st == 'running' else st}")
            if st == "exited":
                raise TalosError(f"VM {n.name} exited (its console is above; {n.dir}/qemu.log)")
            if st == goal:
                pending.discard(n.name)
        if pending and time.monotonic() > deadline:
            raise TalosError(f"VMs not {goal} after {timeout:g}s: {', '.join(sorted(pending))}")
        if pending:
            time.sleep(WAIT_POLL)


def wait_for_vms(opts: CreateOptions, run: CreateRun) -> None:
    """``--wait`` (and always before configs are applied): every VM configured, or waiting in
    maintenance mode for its config."""
    if opts.wait or opts.apply:
        wait_states(run, "running" if opts.inject else "maintenance", opts.timeout)


def apply_configs(opts: CreateOptions, run: CreateRun) -> None:
    """Configs over the API (the ISO boot, ``--with-apply-config``); then, with ``--wait``, the
    install and reboot awaited."""
    if not opts.apply:
        return
    from talos_cluster.bootstrap import apply_configs as send

    send(run.record, run.configs, opts.timeout)
    if opts.wait:
        wait_states(run, "running", opts.timeout)


PREPARE = (
    Step("check the cluster is new", check_new),
    Step("generate configs", configs.generate_configs),
    Step("check the network", steps.check_network),
    Step("make the cluster directory", steps.make_cluster_dir),
)
BUILD = (
    Step("save the record", steps.save_record),
    Step("merge talosconfig", configs.merge_talosconfig),
    Step("write configs", configs.write_configs),
    Step("write the nodes' configs", write_node_configs),
    Step("create the network", create_network),
    Step("start VMs", start_vms),
    Step("wait for VMs", wait_for_vms),
    Step("apply configs", apply_configs),
    Step("bootstrap", steps.bootstrap),
)
FINISH = (
    Step("merge kubeconfig", configs.merge_kubeconfig),
    Step("report", steps.report),
)


# -- destroy --------------------------------------------------------------------------------


def destroy_vms(record: ClusterRecord, *, grace: float) -> list[str]:
    """Stop the VMs (QMP ``quit``, SIGKILL after ``grace``) and the daemons, delete the taps and
    the bridge; returns the problems (the caller keeps the record when there are any)."""
    from talos_cluster import netlab

    problems: list[str] = []
    for n in record.nodes:
        if not proc.alive(n.pid, n.start_time):
            continue
        progress(f"stopping VM {n.name}")
        quit_ok = vm.quit_vm(Path(n.qmp))
        try:
            if proc.stop(n.pid, n.start_time, grace if quit_ok else 0.0, sig=0):
                progress(f"VM {n.name} did not quit: killed")
        except TalosError as exc:
            problems.append(f"VM {n.name}: {exc.message}")
    for what, pid, start in (
        ("dnsmasq", record.dnsmasq_pid, record.dnsmasq_start),
        ("HTTP server", record.http_pid, record.http_start),
    ):
        try:
            proc.stop(pid, start, DAEMON_GRACE)
        except TalosError as exc:
            problems.append(f"{what}: {exc.message}")
    if not record.bridge_netns or record.bridge_netns == netlab.current_netns():
        links = [*(n.tap for n in record.nodes if n.tap), record.bridge]
        try:
            removed, trouble = netlab.remove_links(record.name, links)
        except Exception as exc:  # noqa: BLE001 - netlink errors carry errno text only
            removed, trouble = [], [f"links {', '.join(links)}: {type(exc).__name__}"]
        problems.extend(trouble)
        if record.bridge in removed:
            progress(f"removed bridge {record.bridge} and {len(removed) - 1} tap(s)")
    return problems


def check_record(record: ClusterRecord, where: Path) -> None:
    """A qemu record names only the cluster's links and files inside its directory."""
    from talos_cluster import plan as planmod
    from talos_cluster.state import RecordError

    name = record.name
    if record.layout != "shared" or record.namespaces or record.cgroup_roots:
        raise RecordError(f"{where}: a qemu cluster has no namespaces or cgroups of its own")
    if record.bridge != planmod.bridge_name(name):
        raise RecordError(
            f"{where}: bridge {record.bridge!r} is not cluster {name}'s: refusing to remove it"
        )
    cdir = Path(record.dir)
    for i, n in enumerate(record.nodes):
        m = re.fullmatch(rf"{re.escape(name)}-(master|worker)-([0-9]+)", n.name)
        role: planmod.Role = "controlplane" if m and m[1] == "master" else "worker"
        if m is None or n.tap != planmod.veth_name(name, role, int(m[2]), "shared"):
            raise RecordError(
                f"{where}: nodes[{i}]: link {n.tap!r} is not cluster {name}'s: refusing to "
                "remove it"
            )
        for path in (n.dir, n.disk, n.qmp, n.console):
            if path and Path(path).parent not in (cdir, cdir / n.name):
                raise RecordError(f"{where}: nodes[{i}]: {path} is outside the cluster directory")
