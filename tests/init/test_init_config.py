"""Config sources, persistence, maintenance mode and bad input, with the node as PID 1."""

from __future__ import annotations

import random
import signal
import stat
import subprocess
from pathlib import Path

import pytest

from talos_init import configsource

from .harness import HELPERS, PYTHON, NodeRun, helper, write_config, write_service

pytestmark = [pytest.mark.system, pytest.mark.timeout(180)]


def _persisted(state: Path) -> Path:
    return state / "state" / configsource.CONFIG_NAME


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_config_from_file_url_is_persisted_then_read_from_state(run_node, tmp_path):
    config = write_config(tmp_path / "machine.yaml", hostname="from-file")
    state = tmp_path / "node"
    node = run_node("--cmdline", f"talos.config=file://{config}", state_dir=state)
    node.expect(rf"config loaded from {config}")
    node.expect(r"hostname set to from-file")
    node.expect(r"boot sequence: done")
    node.signal(signal.SIGTERM)
    assert node.wait() == 143
    saved = _persisted(state)
    assert saved.read_text() == config.read_text()
    assert _mode(saved) == 0o600

    again = run_node(state_dir=state)  # no talos.config: STATE is the next source
    again.expect(r"config loaded from STATE \(/system/state/config.yaml\)")
    again.expect(r"hostname set to from-file")
    again.signal(signal.SIGTERM)
    assert again.wait() == 143
    assert not again.matching("maintenance")


def test_config_from_http_on_the_nodes_loopback(run_node, tmp_path):
    config = write_config(tmp_path / "machine.yaml", hostname="from-http")
    state = tmp_path / "node"
    # A private network namespace holds both the HTTP server and the node: 127.0.0.1 only.
    wrap = (
        "unshare",
        "--net",
        "--",
        PYTHON,
        helper("serve_then_exec.py"),
        str(config),
        "--",
        "unshare",
        "--pid",
        "--fork",
        "--mount-proc",
        "--uts",
    )
    node = run_node(
        "--cmdline",
        "talos.config=http://127.0.0.1:{PORT}/config.yaml?uuid=",
        state_dir=state,
        wrap=wrap,
    )
    node.expect(r"config loaded from http://127\.0\.0\.1:\d+/config\.yaml\?uuid=")
    node.expect(r"hostname set to from-http")
    node.signal(signal.SIGTERM)
    assert node.wait() == 143
    assert _persisted(state).read_text() == config.read_text()


def test_unreachable_url_then_maintenance_then_dropped_config(run_node, tmp_path, services_dir):
    write_service(services_dir, "hello", command=PYTHON, args=[helper("print_signals.py")])
    state = tmp_path / "node"
    node = run_node(
        "--cmdline",
        "talos.config=http://127.0.0.1:9/config.yaml",
        "--fetch-timeout",
        "5",
        state_dir=state,
        services=services_dir,
    )
    node.expect(r"config: http://127\.0\.0\.1:9/config\.yaml: cannot fetch")
    node.expect(r"no config: entering maintenance mode")
    node.expect(r"waiting for a machine config")
    assert not node.matching(r"^hello: ready")
    drop = state / "state" / configsource.DROP_NAME
    write_config(drop.with_suffix(".tmp"), hostname="dropped").rename(drop)
    node.expect(r"config accepted from /system/state/apply-config.yaml")
    node.expect(r"hostname set to dropped")
    node.seen(r"^hello: ready pid")
    node.signal(signal.SIGTERM)
    assert node.wait() == 143
    assert _mode(_persisted(state)) == 0o600
    assert not drop.exists()


def test_malformed_config_names_file_key_and_line_and_node_stays_up(run_node, tmp_path):
    bad = write_config(tmp_path / "bad.yaml")
    bad.write_text(bad.read_text().replace("type: init", "type: banana"))
    state = tmp_path / "node"
    node = run_node(state_dir=state, config=str(bad))
    node.expect(r"config rejected:")
    node.expect(rf"{bad}:5 document 1: machine\.type: must be one of: init, controlplane")
    node.expect(r"no config: entering maintenance mode")
    # Still up: a bad dropped config is rejected the same way, then a good one boots.
    drop = state / "state" / configsource.DROP_NAME
    tmp = drop.with_suffix(".tmp")
    text = write_config(tmp).read_text()
    tmp.write_text(text.replace("    network:\n        hostname: node-1\n", "    network: [1]\n"))
    tmp.rename(drop)
    line = text.splitlines().index("    network:") + 1
    node.expect(
        rf"/system/state/apply-config.yaml:{line} document 1: machine\.network: must be a mapping"
    )
    node.expect(r"still in maintenance mode")
    write_config(tmp).rename(drop)
    node.expect(r"config accepted")
    node.expect(r"boot sequence: done")
    node.signal(signal.SIGTERM)
    assert node.wait() == 143


def test_bad_extension_service_is_reported_and_others_run(run_node, tmp_path, services_dir):
    (services_dir / "broken.yaml").write_text(
        "name: broken\ncommand: /bin/true\nrestart: sometimes\ncolour: blue\n"
    )
    (services_dir / "unparsable.yaml").write_text("name: x\n  command: [\n")
    write_service(services_dir, "good", command=PYTHON, args=[helper("print_signals.py")])
    node = run_node(services=services_dir, config=str(write_config(tmp_path / "c.yaml")))
    node.seen(
        rf"extension service rejected: {services_dir}/broken.yaml:4 document 1: colour: unknown key"
    )
    node.seen(
        rf"extension service rejected: {services_dir}/broken.yaml:3 document 1: restart: must be one of always"
    )
    node.seen(rf"extension service rejected: {services_dir}/unparsable.yaml:2: malformed YAML")
    node.seen(r"^good: ready pid")
    node.signal(signal.SIGTERM)
    assert node.wait() == 143
    assert not node.matching(r"service\[broken\]")


def test_persistence_survives_kill_at_random_points(run_node, tmp_path):
    """kill -9 the writer at many points: config.yaml is always the old or the new one."""
    first = write_config(tmp_path / "a.yaml", hostname="first")
    second = write_config(tmp_path / "b.yaml", hostname="second-with-a-longer-name")
    state = tmp_path / "node"
    store = state / "state"
    store.mkdir(parents=True)
    rng = random.Random(1234)
    wanted = {first.read_text(), second.read_text()}
    for _ in range(40):
        writer = NodeRun(
            [PYTHON, str(HELPERS / "persist_loop.py"), str(store), str(first), str(second)], wrap=()
        )
        writer.expect(rf"wrote {rng.randint(1, 25)}$")
        writer.signal(signal.SIGKILL)
        writer.wait()
        saved = _persisted(state)
        assert saved.read_text() in wanted
        assert _mode(saved) == 0o600
    leftovers = list(store.glob(".config.yaml.*.tmp"))
    node = run_node(state_dir=state)
    node.expect(r"config loaded from STATE")
    if leftovers:
        node.seen(rf"removed {len(leftovers)} unfinished config write")
    node.signal(signal.SIGTERM)
    assert node.wait() == 143
    assert not list(store.glob(".config.yaml.*.tmp"))


def test_usage_errors_exit_2(tmp_path):
    from .harness import TALOS_INIT

    cases = [
        ["--mode", "bogus", "--state-dir", str(tmp_path)],
        ["--mode", "container"],
        ["--mode", "container", "--state-dir", str(tmp_path / "missing")],
    ]
    for argv in cases:
        out = subprocess.run([TALOS_INIT, *argv], capture_output=True, text=True, check=False)
        assert out.returncode == 2, (argv, out.stderr)
        assert out.stderr.strip()
    version = subprocess.run([TALOS_INIT, "--version"], capture_output=True, text=True, check=True)
    assert version.stdout.startswith("talos-init ")


def test_container_reboot_reruns_the_sequence_and_shutdown_exits_0(run_node, tmp_path):
    services = tmp_path / "services"
    services.mkdir()
    write_service(services, "hello", command=PYTHON, args=[helper("print_signals.py")])
    config = write_config(tmp_path / "c.yaml")
    state = tmp_path / "node"
    state.mkdir()
    node = NodeRun(
        [
            "unshare",
            "--pid",
            "--fork",
            "--mount-proc",
            "--uts",
            "--net",
            PYTHON,
            helper("reboot_driver.py"),
            str(state),
            str(services),
            str(config),
        ],
        wrap=(),
    )
    try:
        assert node.wait() == 0
    finally:
        node.kill()
    lines = node.lines
    assert sum("[talos] boot sequence: done" in line for line in lines) == 2
    assert sum("[talos] initialize sequence: done" in line for line in lines) == 2
    reboot = next(i for i, line in enumerate(lines) if "reboot sequence: 1 phase(s)" in line)
    shutdown = next(i for i, line in enumerate(lines) if "shutdown sequence: 1 phase(s)" in line)
    assert reboot < shutdown
    assert sum("service[hello](Finished): Service stopped" in line for line in lines) == 2
    # The second boot is a re-run of the sequence: the node's root is built once.
    assert sum("task setupSystemDirectory (1/1): starting" in line for line in lines) == 1


INTERFACES = [
    {
        "interface": "v0",
        "cidr": "10.9.0.2/24",
        "mtu": 1400,
        "routes": [{"network": "10.10.0.0/16", "gateway": "10.9.0.1", "metric": 1024}],
    },
    {"interface": "eth9", "cidr": "10.11.0.2/24"},
]


@pytest.mark.parametrize("manage", [True, False])
def test_static_addresses_and_routes_in_a_private_netns(run_node, tmp_path, manage):
    config = write_config(
        tmp_path / "net.yaml", "join", "net-1", network={"interfaces": INTERFACES}
    )
    services = tmp_path / "services"
    services.mkdir()
    show = "ip -o -4 addr show dev v0; ip -o link show dev v0; ip route show dev v0"
    write_service(services, "show", command="/bin/sh", args=["-c", show], restart="until-success")
    # The test's own network namespace with a veth pair: nothing here reaches the host's network.
    wrap = (
        "unshare",
        "--net",
        "--",
        "/bin/sh",
        "-c",
        'ip link add v0 type veth peer name v1 && exec "$@"',
        "sh",
        "unshare",
        "--pid",
        "--fork",
        "--mount-proc",
        "--uts",
    )
    extra = ("--manage-network",) if manage else ()
    node = run_node(*extra, services=services, config=str(config), wrap=wrap)
    node.seen(r"service\[show\]\(Finished\)")
    node.signal(signal.SIGTERM)
    assert node.wait() == 143
    shown = "\n".join(node.matching(r"^show: "))
    if manage:
        assert node.matching(r"machine\.network\.interfaces\[0\]: v0 has 10\.9\.0\.2/24")
        assert node.matching(r"machine\.network\.interfaces\[1\]: link eth9 not found")
        assert "inet 10.9.0.2/24" in shown
        assert "mtu 1400" in shown
        assert "10.10.0.0/16 via 10.9.0.1" in shown and "metric 1024" in shown
    else:
        assert node.matching(r"machine\.network\.interfaces: left to the launcher")
        assert "inet 10.9.0.2" not in shown


def test_killing_the_node_while_it_saves_its_config(run_node, tmp_path):
    """SIGKILL PID 1 at varying points around saveConfig, booting A and B alternately."""
    configs = [
        write_config(tmp_path / "a.yaml", hostname="first"),
        write_config(tmp_path / "b.yaml", hostname="second-with-a-longer-name"),
    ]
    wanted = {c.read_text() for c in configs}
    state = tmp_path / "node"
    rng = random.Random(99)
    stops = [
        r"task loadConfig \(1/1\): done",
        r"phase saveConfig \(2/5\): 1 tasks",
        r"task saveConfig \(1/1\): starting",
        r"config saved to",
        r"task saveConfig \(1/1\): done",
    ]
    for i in range(24):
        node = run_node(state_dir=state, config=str(configs[i % 2]), echo=False)
        node.expect(rng.choice(stops))
        node.signal(signal.SIGKILL)
        node.wait()
        saved = _persisted(state)
        if saved.exists():
            assert saved.read_text() in wanted
            assert _mode(saved) == 0o600
    assert _persisted(state).exists()


def test_sigterm_in_maintenance_mode_exits_143(run_node, tmp_path):
    node = run_node(state_dir=tmp_path / "node")
    node.expect(r"no config: entering maintenance mode")
    node.expect(r"waiting for a machine config")
    node.signal(signal.SIGTERM)
    assert node.wait(30) == 143
    assert not node.matching(r"boot sequence: done")
