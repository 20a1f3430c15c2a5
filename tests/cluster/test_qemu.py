"""The qemu provisioner without a VM: QEMU's command line, MACs, the console's states, dnsmasq's
command line and host list, the record, the accelerator's cache, and a real half-made cluster
(bridge, taps, dnsmasq, HTTP server) that ``destroy`` removes.

The half-made cluster is real: ``create --provisioner qemu`` runs until its VMs would start
(the step that starts them is replaced by an interrupt or a failure), in the pytest session's
private network namespace, with files standing in for the kernel, initramfs and installer
bundle (nothing boots them).
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from talos_cluster import plan as planmod
from talos_cluster import state
from talos_cluster.pipeline import Step
from talos_cluster.qemu import network, proc, provision, vm

from cluster.conftest import Env, net_snapshot

# -- QEMU's command line --------------------------------------------------------------------


def _spec(**kw: object) -> vm.VmSpec:
    base: dict[str, object] = {
        "name": "c-master-1",
        "accel": "tcg",
        "cpus": 1,
        "memory_mib": 1024,
        "console": Path("/s/c/c-master-1/console.log"),
        "qmp": Path("/s/c/c-master-1/qmp.sock"),
        "disk": Path("/s/c/c-master-1/disk.raw"),
        "tap": "c_m1",
        "mac": "52:54:00:aa:00:01",
        "uuid": "u",
        "boot": "iso",
        "iso": Path("/m/talos-amd64.iso"),
    }
    base.update(kw)
    return vm.VmSpec(**base)  # type: ignore[arg-type]


def _opt(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, a in enumerate(argv) if a == flag]


def test_iso_vm_boots_its_disk_first_then_the_iso_and_survives_reboots() -> None:
    argv = vm.argv(_spec())
    assert argv[0] == "qemu-system-x86_64"
    assert "-no-reboot" not in argv and "-kernel" not in argv  # a guest reboot is a reset
    devices = _opt(argv, "-device")
    assert "virtio-blk-pci,drive=disk,bootindex=1" in devices
    assert "ide-cd,drive=cd,bootindex=2" in devices
    assert "virtio-net-pci,netdev=net,mac=52:54:00:aa:00:01" in devices  # not a boot device
    drives = _opt(argv, "-drive")
    assert any(d.startswith("file=/s/c/c-master-1/disk.raw,format=raw") for d in drives)
    assert any(d.startswith("file=/m/talos-amd64.iso,") and "media=cdrom" in d for d in drives)
    assert _opt(argv, "-netdev") == ["tap,id=net,ifname=c_m1,script=no,downscript=no"]
    assert _opt(argv, "-qmp") == ["unix:/s/c/c-master-1/qmp.sock,server=on,wait=off"]
    assert _opt(argv, "-chardev") == ["file,id=console,path=/s/c/c-master-1/console.log,append=on"]
    assert _opt(argv, "-serial") == ["chardev:console"]
    assert _opt(argv, "-accel") == ["tcg,tb-size=64"]
    assert _opt(argv, "-smp") == ["1"] and _opt(argv, "-m") == ["1024"]
    assert "pflash" not in " ".join(argv)  # SeaBIOS unless --with-uefi


def test_pxe_vm_boots_its_disk_first_then_the_nic_kvm_and_uefi() -> None:
    argv = vm.argv(_spec(boot="pxe", iso=None, accel="kvm", uefi_vars=Path("/s/c/n/OVMF_VARS.fd")))
    devices = _opt(argv, "-device")
    assert "virtio-blk-pci,drive=disk,bootindex=1" in devices
    assert "virtio-net-pci,netdev=net,mac=52:54:00:aa:00:01,bootindex=2" in devices
    assert not any("cdrom" in d for d in _opt(argv, "-drive"))
    assert _opt(argv, "-accel") == ["kvm"] and _opt(argv, "-cpu") == ["host"]
    assert _opt(argv, "-machine") == ["q35"]
    flash = [d for d in _opt(argv, "-drive") if d.startswith("if=pflash")]
    assert flash == [
        f"if=pflash,format=raw,readonly=on,file={vm.OVMF_CODE}",
        "if=pflash,format=raw,file=/s/c/n/OVMF_VARS.fd",
    ]


def test_iso_boot_without_the_iso_is_refused() -> None:
    with pytest.raises(ValueError, match="needs the ISO"):
        vm.argv(_spec(iso=None))


def test_cpus_round_up_to_whole_vcpus() -> None:
    assert [vm.smp(c) for c in (0.01, 1.0, 1.5, 2.0)] == [1, 1, 2, 2]


def test_macs_are_stable_per_cluster_distinct_per_node_and_locally_administered() -> None:
    macs = [vm.mac_address("talos-default", i) for i in range(1, 301)]
    assert len(set(macs)) == 300
    assert macs == [vm.mac_address("talos-default", i) for i in range(1, 301)]
    assert all(m.startswith("52:54:00:") and len(m) == 17 for m in macs)
    assert macs[0].endswith(":00:01") and macs[256].endswith(":01:01")


def test_disk_is_sparse_and_blank(tmp_path: Path) -> None:
    disk = tmp_path / "disk.raw"
    vm.make_disk(disk, 6144)
    st = disk.stat()
    assert st.st_size == 6144 << 20 and st.st_blocks * 512 < 1 << 20
    with pytest.raises(FileExistsError):  # never over a disk that exists
        vm.make_disk(disk, 1024)


# -- what the console shows -----------------------------------------------------------------

_BOOT1 = "SeaBIOS\n[    0.000000] Linux version 6.1.0\n[talos] talos-init mode metal, pid 1\n"


@pytest.mark.parametrize(
    ("text", "state"),
    [
        ("", "booting"),
        ("SeaBIOS (version 1.16)\n", "booting"),
        (_BOOT1, "booting"),
        (_BOOT1 + "[talos] waiting for a machine config: apply it\n", "maintenance"),
        (
            _BOOT1 + "[talos] waiting for a machine config\n[talos] install: partitioning /dev/vda",
            "installing",
        ),
        (_BOOT1 + "[talos] install: done; rebooting from the installed disk\n", "rebooting"),
        # the second boot (from the disk) starts over: its markers only
        (
            _BOOT1
            + "[talos] install: done; rebooting from the installed disk\n"
            + "[    0.000000] Linux version 6.1.0\n",
            "booting",
        ),
        (
            _BOOT1
            + "[talos] install: done; rebooting\n[    0.0] Linux version 6.1.0\n"
            + "[talos] boot sequence: done\n",
            "running",
        ),
        (_BOOT1 + "[talos] boot sequence: done\n[talos] rebooting\n", "rebooting"),
    ],
)
def test_console_state_is_the_last_marker_of_the_latest_boot(text: str, state: str) -> None:
    assert vm.console_state(text) == state


# -- dnsmasq and the HTTP server's files ----------------------------------------------------


def test_dnsmasq_serves_fixed_addresses_on_the_bridge_only() -> None:
    p = planmod.make_plan(
        name="c",
        cidr="10.7.0.0/24",
        masters=1,
        workers=1,
        cpus=1,
        memory_mib=1024,
        cpus_workers=1,
        memory_workers_mib=1024,
    )
    hosts = [
        network.DhcpHost(vm.mac_address("c", i), n.ip, n.name, f"http://10.7.0.1:8/{n.name}")
        for i, n in enumerate(p.nodes, start=1)
    ]
    assert [h.ip for h in hosts] == ["10.7.0.2", "10.7.0.3"]
    lines = network.hosts_file(hosts).splitlines()
    assert lines[0] == f"{hosts[0].mac},set:h10-7-0-2,10.7.0.2,c-master-1"
    argv = network.dnsmasq_argv(p, hosts, Path("/s/c"))
    assert "--interface=c" in argv and "--bind-interfaces" in argv
    assert "--port=0" in argv  # no DNS
    assert "--dhcp-range=10.7.0.0,static,255.255.255.0,1h" in argv  # no lease but the hosts'
    assert "--dhcp-option=option:router,10.7.0.1" in argv
    assert [a for a in argv if a.startswith("--dhcp-host")] == [f"--dhcp-host={x}" for x in lines]
    assert "--dhcp-boot=tag:h10-7-0-3,http://10.7.0.1:8/c-worker-1" in argv
    assert all(not a.startswith("--pid-file=/run") for a in argv)  # never the system's
    without = network.dnsmasq_argv(p, [network.DhcpHost("m", "10.7.0.2", "x")], Path("/s"))
    assert not any(a.startswith("--dhcp-boot") for a in without)  # ISO boots: no boot file


def test_ipxe_script_boots_the_kernel_and_initramfs_from_the_gateway() -> None:
    script = network.ipxe_script("http://10.5.0.1:9", "console=ttyS0 talos.config=X")
    assert script.splitlines() == [
        "#!ipxe",
        "kernel http://10.5.0.1:9/vmlinuz console=ttyS0 talos.config=X",
        "initrd http://10.5.0.1:9/initramfs.xz",
        "boot",
    ]


# -- the accelerator ------------------------------------------------------------------------


def test_accelerator_probe_is_kept_per_boot_and_kernel(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    kernel = tmp_path / "vmlinuz"
    kernel.write_bytes(b"k")
    probes: list[Path] = []

    def probe(k: Path) -> bool:
        probes.append(k)
        return True

    monkeypatch.setattr(vm, "kvm_works", probe)
    cache = tmp_path / "accel.json"
    assert vm.choose_accel(kernel, cache) == "kvm"
    assert vm.choose_accel(kernel, cache) == "kvm"
    assert probes == [kernel]  # asked once
    kernel.write_bytes(b"another kernel")  # a new kernel is probed again
    monkeypatch.setattr(vm, "kvm_works", lambda k: False)
    assert vm.choose_accel(kernel, cache) == "tcg"


# -- the record -----------------------------------------------------------------------------


def _record(tmp_path: Path) -> state.ClusterRecord:
    cdir = tmp_path / "c"
    cdir.mkdir(parents=True)
    rec = state.ClusterRecord(
        name="c",
        cidr="10.5.0.0/24",
        dir=str(cdir),
        netns="",
        layout="shared",
        bridge="c",
        provisioner="qemu",
        http_port=8080,
        dnsmasq_pid=11,
        dnsmasq_start=12,
        accel="tcg",
    )
    rec.nodes.append(
        state.NodeRecord(
            name="c-master-1",
            role="controlplane",
            ip="10.5.0.2",
            netns="",
            dir=str(cdir / "c-master-1"),
            console=str(cdir / "c-master-1" / "console.log"),
            tap="c_m1",
            mac="52:54:00:aa:00:01",
            disk=str(cdir / "c-master-1" / "disk.raw"),
            qmp=str(cdir / "c-master-1" / "qmp.sock"),
        )
    )
    return rec


def test_qemu_record_round_trips_and_is_checked(tmp_path: Path) -> None:
    from talos_cluster.commands.destroy import check_record

    rec = _record(tmp_path)
    rec.save()
    loaded = state.load(Path(rec.dir))
    assert loaded == rec
    check_record(loaded, tmp_path, "c")
    for change, message in (
        ({"tap": "eth0"}, "link 'eth0' is not cluster c's"),
        ({"disk": "/etc/passwd"}, "outside the cluster directory"),
    ):
        bad = _record(tmp_path / str(len(message)))
        for k, v in change.items():
            setattr(bad.nodes[0], k, v)
        with pytest.raises(state.RecordError, match=message):
            check_record(bad, tmp_path / str(len(message)), "c")
    other = _record(tmp_path / "p")
    other.provisioner = "docker"
    with pytest.raises(state.RecordError, match="provisioner 'docker'"):
        check_record(other, tmp_path / "p", "c")
    other.provisioner, other.namespaces = "qemu", ["c-master-1"]
    with pytest.raises(state.RecordError, match="no namespaces"):
        check_record(other, tmp_path / "p", "c")


def test_record_without_provisioner_is_a_namespace_cluster(tmp_path: Path) -> None:
    rec = _record(tmp_path)
    rec.save()
    path = Path(rec.dir) / state.STATE_FILE
    text = "\n".join(
        line for line in path.read_text().splitlines() if not line.startswith("provisioner:")
    )
    path.write_text(text + "\n")
    loaded = state.load(Path(rec.dir))
    assert loaded is not None and loaded.provisioner == "namespace"


# -- a real half-made cluster ---------------------------------------------------------------


@pytest.fixture
def qemu_env(env: Env, tmp_path: Path) -> Iterator[tuple[Env, list[str]]]:
    from talos_cluster.qemu.options import missing_tools

    reason = missing_tools(uefi=False)
    if reason is not None:
        pytest.skip(reason)
    assets = tmp_path / "assets"
    assets.mkdir()
    for name in ("vmlinuz", "initramfs.xz"):
        (assets / name).write_bytes(b"not booted\n")
    (assets / "installer-amd64.tar").write_bytes(b"the installer bundle\n" * 1000)
    (env.state_dir).mkdir(parents=True)
    # the accelerator is decided without booting anything
    (env.state_dir / provision.ACCEL_CACHE).write_text("{}")
    flags = [
        "--provisioner",
        "qemu",
        "--cidr",
        "10.77.0.0/24",
        "--vmlinuz-path",
        str(assets / "vmlinuz"),
        "--initrd-path",
        str(assets / "initramfs.xz"),
        "--install-image",
        str(assets / "installer-amd64.tar"),
    ]
    yield env, flags


def _no_kvm(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vm, "kvm_works", lambda kernel: False)


def _replace_step(monkeypatch: pytest.MonkeyPatch, name: str, run: Step) -> None:
    build = tuple(run if s.name == name else s for s in provision.BUILD)
    assert build != provision.BUILD
    monkeypatch.setattr(provision, "BUILD", build)


def _processes(rec: state.ClusterRecord) -> dict[str, bool]:
    return {
        "dnsmasq": proc.alive(rec.dnsmasq_pid, rec.dnsmasq_start),
        "http": proc.alive(rec.http_pid, rec.http_start),
    }


def _get(url: str) -> bytes:
    """GET ``url`` (an http:// URL of the test's own server)."""
    assert url.startswith("http://")
    with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - http only, checked above
        return bytes(r.read())


def _links() -> set[str]:
    links = net_snapshot()["link"]
    assert isinstance(links, list)
    return {str(link["ifname"]) for link in links}


def test_interrupted_create_leaves_a_recorded_network_that_destroy_removes(
    qemu_env: tuple[Env, list[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    from talos_cluster.cli import main

    env, flags = qemu_env
    _no_kvm(monkeypatch)
    before = net_snapshot()

    def interrupt(opts: object, run: object) -> None:
        raise KeyboardInterrupt

    _replace_step(monkeypatch, "start VMs", Step("start VMs", interrupt))
    assert main(env.create_args(*flags)) == 130
    rec = state.load(env.cluster_dir)
    assert rec is not None and rec.provisioner == "qemu" and not rec.complete
    assert _processes(rec) == {"dnsmasq": True, "http": True}
    taps = [n.tap for n in rec.nodes]
    assert {rec.bridge, *taps} <= _links()
    # the daemons do their work: dnsmasq serves the fixed hosts on the bridge, the HTTP server
    # the bundle (and nothing it was not given)
    deadline = time.monotonic() + 10
    log = env.cluster_dir / "dnsmasq.log"
    while "static leases only" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, log.read_text() if log.exists() else "no log"
        time.sleep(0.05)
    assert "DHCP, static leases only on 10.77.0.0, lease time 1h" in log.read_text()
    base = f"http://10.77.0.1:{rec.http_port}"
    assert _get(f"{base}/installer-amd64.tar") == b"the installer bundle\n" * 1000
    with pytest.raises(urllib.error.HTTPError, match="404"):
        _get(f"{base}/../cluster.yaml")
    hosts = (env.cluster_dir / "dhcp-hosts").read_text().splitlines()
    assert [h.split(",")[2] for h in hosts] == ["10.77.0.2", "10.77.0.3"]

    assert main(["destroy", *env.args()]) == 0
    assert _processes(rec) == {"dnsmasq": False, "http": False}
    assert not env.cluster_dir.exists()
    after = net_snapshot()
    assert after["link"] == before["link"] and after["addr"] == before["addr"]
    assert after["route"] == before["route"]
    assert main(["destroy", *env.args()]) == 0  # twice is fine


@pytest.mark.parametrize(
    ("flags", "volumes"),
    [
        ([], set()),  # negative control: no flag, no encryption
        (["--encrypt-state"], {"state"}),
        (["--encrypt-state", "--encrypt-ephemeral"], {"state", "ephemeral"}),
    ],
)
def test_encrypt_flags_give_every_node_nodeid_keyed_luks_volumes(
    flags: list[str],
    volumes: set[str],
    qemu_env: tuple[Env, list[str]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Each node's config (the one it is given) asks for LUKS2 on the volumes named, with one
    key derived from the node's ID, so the VM opens them on every boot without a secret."""
    from talos_cluster.cli import main

    from libtalos import config as cfgmod

    env, base = qemu_env
    _no_kvm(monkeypatch)

    def interrupt(opts: object, run: object) -> None:
        raise KeyboardInterrupt

    _replace_step(monkeypatch, "create the network", Step("create the network", interrupt))
    assert main(env.create_args(*base, *flags)) == 130
    try:
        for role, kind in (("master", "controlplane.yaml"), ("worker", "join.yaml")):
            node = f"{env.name}-{role}-1"
            path = env.cluster_dir / node / "config.yaml"
            machine = cfgmod.load(path.read_text(), kind).config.machine
            encryption = machine.system_disk_encryption
            got = {v for v in ("state", "ephemeral") if getattr(encryption, v, None) is not None}
            assert got == volumes, (node, encryption)
            for volume in volumes:
                spec = getattr(encryption, volume)
                assert spec.provider == "luks2"
                assert [(k.slot, k.node_id is not None) for k in spec.keys] == [(0, True)]
            install = machine.install
            assert install is not None and install.disk == "/dev/vda"  # its own patch is kept
    finally:
        assert main(["destroy", *env.args()]) == 0


def test_failed_create_removes_the_network_and_the_state(
    qemu_env: tuple[Env, list[str]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from talos_cluster.cli import main

    from libtalos.errors import TalosError

    env, flags = qemu_env
    _no_kvm(monkeypatch)
    before = net_snapshot()
    seen: list[state.ClusterRecord] = []

    def fail(opts: object, run: object) -> None:
        seen.append(run.record)  # type: ignore[attr-defined]
        raise TalosError("a VM cannot start")

    _replace_step(monkeypatch, "start VMs", Step("start VMs", fail))
    assert main(env.create_args(*flags)) == 1
    assert "a VM cannot start" in capsys.readouterr().err
    (rec,) = seen
    assert rec.dnsmasq_pid and rec.http_pid  # they had started
    assert _processes(rec) == {"dnsmasq": False, "http": False}
    assert not env.cluster_dir.exists()
    assert net_snapshot()["link"] == before["link"]
    assert not env.talosconfig.exists()  # the merged context went with it


def test_destroy_stops_a_vm_with_qmp_quit(tmp_path: Path) -> None:
    """A real QEMU (no disk, no NIC, firmware only) stopped by destroy's QMP ``quit``."""
    if shutil.which(vm.QEMU) is None:
        pytest.skip(f"{vm.QEMU} is not installed (Debian package qemu-system-x86)")
    sock = tmp_path / "qmp.sock"
    argv = [vm.QEMU, "-nodefaults", "-nographic", "-monitor", "none", "-S"]
    argv += ["-accel", "tcg", "-m", "64", "-qmp", f"unix:{sock},server=on,wait=off"]
    pid, start = proc.spawn(argv, tmp_path / "qemu.log", "test VM")
    try:
        deadline = time.monotonic() + 30
        while not sock.exists():
            assert proc.alive(pid, start), (tmp_path / "qemu.log").read_text()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        assert vm.qmp(sock, "query-status")["return"] == {
            "status": "prelaunch",
            "singlestep": False,
            "running": False,
        }
        assert vm.quit_vm(sock)
        assert proc.wait_gone(pid, start, 10)
        assert not vm.quit_vm(sock)  # nothing answers any more
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, 9)
        proc.reap(pid)


def test_spawned_process_is_known_by_pid_and_start_time(tmp_path: Path) -> None:
    pid, start = proc.spawn(["sleep", "30"], tmp_path / "log", "sleep")
    assert proc.alive(pid, start)
    assert not proc.alive(pid, start + 1)  # a reused PID is not ours
    assert not proc.stop(pid, start + 1, 1.0)  # and is left alone
    assert proc.alive(pid, start)
    assert not proc.stop(pid, start, 5.0)  # SIGTERM sufficed
    assert not proc.alive(pid, start)
    with pytest.raises(proc.SpawnError, match="cannot start"):
        proc.spawn(["/nonexistent/x"], tmp_path / "log", "x")


def test_httpd_serves_only_its_map(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("no")
    served = tmp_path / "a"
    served.write_text("yes")
    mapping = tmp_path / "map.json"
    mapping.write_text(json.dumps({"/a": str(served)}))
    port = network.free_port()
    pid, start = proc.spawn(
        network.httpd_argv("127.0.0.1", port, mapping), tmp_path / "http.log", "http"
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                assert _get(f"http://127.0.0.1:{port}/a") == b"yes"
                break
            except urllib.error.URLError:
                assert time.monotonic() < deadline and proc.alive(pid, start)
                time.sleep(0.05)
        for path in ("/secret", f"/{secret}", "/a/../secret", "/"):
            with pytest.raises(urllib.error.HTTPError, match="404"):
                _get(f"http://127.0.0.1:{port}{path}")
        assert "GET /a" in (tmp_path / "http.log").read_text()
        # a file added to the map is served from then on (another bundle, for an upgrade)
        mapping.write_text(json.dumps({"/a": str(served), "/b": str(served)}))
        assert _get(f"http://127.0.0.1:{port}/b") == b"yes"
    finally:
        proc.stop(pid, start, 5.0)


def test_destroy_kills_a_vm_whose_qmp_does_not_answer(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A VM process that QMP cannot reach (its socket is gone) is SIGKILLed after the grace."""
    rec = _record(tmp_path)
    rec.dnsmasq_pid = rec.dnsmasq_start = 0
    n = rec.nodes[0]
    n.pid, n.start_time = proc.spawn(["sleep", "300"], tmp_path / "vm.log", "stand-in VM")
    assert not Path(n.qmp).exists()
    problems = provision.destroy_vms(rec, grace=0.2)
    assert problems == []
    assert not proc.alive(n.pid, n.start_time)
    assert f"VM {n.name} did not quit: killed" in capsys.readouterr().err


# -- the command line -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--provisioner", "docker"], "--provisioner: 'docker' is not namespace or qemu"),
        (["--iso-path", "/x.iso"], "--iso-path: only with --provisioner qemu"),
        (["--with-uefi"], "--with-uefi: only with --provisioner qemu"),
        (["--disk", "100"], "--disk: only with --provisioner qemu"),
        (["--encrypt-state"], "--encrypt-state: only with --provisioner qemu"),
        (["--encrypt-ephemeral"], "--encrypt-ephemeral: only with --provisioner qemu"),
        (["--provisioner", "qemu", "--isolated"], "--isolated: the qemu provisioner's bridge"),
        (["--provisioner", "qemu", "--disk", "100"], "--disk: 100: must be from 1024"),
        (
            ["--provisioner", "qemu", "--iso-path", "/x.iso", "--initrd-path", "/i"],
            "--iso-path excludes --initrd-path",
        ),
    ],
)
def test_bad_qemu_flags_are_usage_errors_before_anything_is_made(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from talos_cluster.cli import main

    state_dir = tmp_path / "clusters"
    code = main(
        ["create", "--state-dir", str(state_dir), "--talosconfig", str(tmp_path / "tc"), *args]
    )
    assert code == 2
    assert message in capsys.readouterr().err
    assert not state_dir.exists() and not (tmp_path / "tc").exists()


def test_missing_boot_assets_name_the_command_that_builds_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from talos_cluster.cli import main
    from talos_cluster.qemu.options import missing_tools

    if missing_tools(uefi=False) is not None:
        pytest.skip(str(missing_tools(uefi=False)))
    monkeypatch.chdir(tmp_path)  # no _out/ here
    code = main(["create", "--provisioner", "qemu", "--state-dir", str(tmp_path / "s")])
    assert code == 1
    err = capsys.readouterr().err
    assert f"--vmlinuz-path: {tmp_path}/_out/vmlinuz-amd64: no such file" in err
    assert "talos-image rootfs -o _out" in err
    assert not (tmp_path / "s").exists()
