"""In-process tests of talos-init's parts: service files, config, sequencer, spawn, supervisor."""

from __future__ import annotations

import ast
import asyncio
import gzip
import os
import signal
import stat
import subprocess
import sys
import textwrap

import pytest

from libtalos.errors import DocumentError
from libtalos.yamlio import load_one
from talos_init import configsource
from talos_init.logring import Console
from talos_init.reaper import Reaper, describe, exit_code
from talos_init.sequencer import Phase, Sequencer, TaskFailedError, duration
from talos_init.services import ServiceSpec, load_services_dir, parse_service
from talos_init.spawn import EXIT_NOT_EXECUTABLE, EXIT_NOT_FOUND, SpawnError, spawn
from talos_init.supervisor import Event, State, Supervisor

from .harness import base_config

pytestmark = pytest.mark.timeout(60)


def _service(text: str, source: str = "svc.yaml") -> ServiceSpec:
    return parse_service(load_one(textwrap.dedent(text), source))


def _problems(text: str) -> list[str]:
    with pytest.raises(DocumentError) as info:
        _service(text)
    return [p.render() for p in info.value.problems]


# -- extension service files -----------------------------------------------------------------


def test_full_service_document():
    spec = _service("""\
        name: web
        command: /usr/bin/web
        args: [--port, 8080]
        environment: {MODE: prod}
        depends: [db, {path: /var/ready}, {network: true}, {service: cache}]
        restart: until-success
        preStart: [/bin/true]
        healthCheck: {http: "http://127.0.0.1:8080/healthz", initialDelay: 250ms, period: 2s}
        restartDelay: 1.5
        stopGrace: 1m
        forwardSignals: [SIGHUP, SIGUSR2]
    """)
    assert spec.argv == ("/usr/bin/web", "--port", "8080")
    assert spec.environment == {"MODE": "prod"}
    assert spec.depends_services == ("db", "cache")
    assert spec.depends_paths == ("/var/ready",)
    assert spec.depends_network
    assert spec.restart == "until-success"
    assert spec.health is not None
    assert (spec.health.kind, spec.health.initial_delay, spec.health.period) == ("http", 0.25, 2.0)
    assert spec.health.timeout == 0.5  # Talos's default
    assert (spec.restart_delay, spec.stop_grace) == (1.5, 60.0)
    assert spec.forward_signals == {signal.SIGHUP, signal.SIGUSR2}


def test_defaults_are_talos_defaults():
    spec = _service("name: a\ncommand: /bin/true\n")
    assert (spec.restart, spec.restart_delay, spec.stop_grace) == ("always", 5.0, 10.0)


def test_every_problem_names_file_key_and_line():
    problems = _problems("""\
        name: Bad_Name
        command: ""
        restart: sometimes
        colour: blue
        healthCheck: {tcp: nohost, http: "http://x"}
        stopGrace: soon
        forwardSignals: [SIGKILL]
        environment: [NOEQUALS]
    """)
    assert (
        "svc.yaml:1 document 1: name: must be lowercase letters, digits and '-', at most 63 characters"
        in problems
    )
    assert "svc.yaml:2 document 1: command: must be a non-empty string" in problems
    assert "svc.yaml:3 document 1: restart: must be one of always, until-success, never" in problems
    assert any(p.startswith("svc.yaml:4 document 1: colour: unknown key") for p in problems)
    assert "svc.yaml:5 document 1: healthCheck: needs exactly one of tcp, http, command" in problems
    assert (
        "svc.yaml:6 document 1: stopGrace: must be a duration such as 500ms, 5s or 1m" in problems
    )
    assert (
        "svc.yaml:7 document 1: forwardSignals[0]: must be one of SIGHUP, SIGUSR1, SIGUSR2"
        in problems
    )
    assert "svc.yaml:8 document 1: environment[0]: must be a KEY=value string" in problems


def test_missing_required_keys():
    problems = _problems("args: [x]\n")
    assert "svc.yaml:1 document 1: missing required key 'name'" in problems
    assert "svc.yaml:1 document 1: missing required key 'command'" in problems


def test_services_dir_keeps_good_files_and_reports_bad_ones(tmp_path):
    (tmp_path / "a.yaml").write_text("name: a\ncommand: /bin/true\n")
    (tmp_path / "b.yaml").write_text("name: b\ncommand: /bin/true\ndepends: [ghost]\n")
    (tmp_path / "c.yml").write_text("name: a\ncommand: /bin/false\n")
    (tmp_path / "d.yaml").write_text("name: d\ncommand: /bin/true\ndepends: [e]\n")
    (tmp_path / "e.yaml").write_text("name: e\ncommand: /bin/true\ndepends: [d]\n")
    (tmp_path / "notes.txt").write_text("not a service")
    specs, problems = load_services_dir(tmp_path)
    assert [s.id for s in specs] == ["a"]
    rendered = [p.render() for p in problems]
    assert (
        f"{tmp_path}/b.yaml:3 document 1: depends[0]: unknown service 'ghost' "
        f"(no file in {tmp_path} defines it)"
    ) in rendered
    assert any(
        r.startswith(f"{tmp_path}/c.yml:1 document 1: name: duplicate service name")
        for r in rendered
    )
    assert f"{tmp_path}/d.yaml:3 document 1: depends[0]: dependency cycle: d -> e -> d" in rendered
    assert f"{tmp_path}/e.yaml:3 document 1: depends[0]: dependency cycle: e -> d -> e" in rendered
    assert len(rendered) == 4


def test_services_dir_reports_entries_that_are_not_files(tmp_path):
    (tmp_path / "a.yaml").write_text("name: a\ncommand: /bin/true\n")
    (tmp_path / "x.yaml").mkdir()
    (tmp_path / "x.yaml" / "inner.yaml").write_text("name: inner\ncommand: /bin/true\n")
    os.mkfifo(tmp_path / "fifo.yml")  # read, it would block the boot: refused before reading
    (tmp_path / "link.yaml").symlink_to(tmp_path / "x.yaml")
    (tmp_path / "dangling.yaml").symlink_to(tmp_path / "nowhere")
    (tmp_path / "subdir").mkdir()  # negative control: not named *.yaml, not a service: no problem
    specs, problems = load_services_dir(tmp_path)
    assert [s.id for s in specs] == ["a"]
    assert sorted(p.render() for p in problems) == [
        f"{tmp_path}/dangling.yaml: cannot read: No such file or directory",
        f"{tmp_path}/fifo.yml: not a regular file, not a service file (each service is one file "
        "named *.yaml or *.yml)",
        f"{tmp_path}/link.yaml: a directory, not a service file (each service is one file named "
        "*.yaml or *.yml)",
        f"{tmp_path}/x.yaml: a directory, not a service file (each service is one file named "
        "*.yaml or *.yml)",
    ]


def test_services_dir_names_every_missing_dependency(tmp_path):
    """A dependency that is rejected, missing or left out is named on the item's own line; the
    services that depend on it, directly or not, are left out; the rest run."""
    files = {
        "base.yaml": "name: base\ncommand: /bin/true\n",
        "bad.yaml": "name: bad\ncommand: /bin/true\nrestart: sometimes\n",
        "web.yaml": "name: web\ncommand: /bin/true\ndepends:\n  - base\n  - service: bad\n",
        "app.yaml": "name: app\ncommand: /bin/true\ndepends:\n  - path: /x\n  - web\n",
        "ghost.yaml": "name: ghost\ncommand: /bin/true\ndepends: [base, {service: gone}]\n",
        "ok.yaml": "name: ok\ncommand: /bin/true\ndepends: [base]\n",
    }
    for name, text in files.items():
        (tmp_path / name).write_text(text)
    specs, problems = load_services_dir(tmp_path)
    assert sorted(s.id for s in specs) == ["base", "ok"]
    rendered = [p.render() for p in problems]
    assert (
        f"{tmp_path}/bad.yaml:3 document 1: restart: must be one of always, until-success, never"
    ) in rendered
    assert (
        f"{tmp_path}/web.yaml:5 document 1: depends[1].service: service 'bad' is rejected "
        f"(see the problems of {tmp_path}/bad.yaml)"
    ) in rendered
    assert (
        f"{tmp_path}/ghost.yaml:3 document 1: depends[1].service: unknown service 'gone' "
        f"(no file in {tmp_path} defines it)"
    ) in rendered
    assert (
        f"{tmp_path}/app.yaml:5 document 1: depends[1]: service 'web' is left out "
        "(see its problems)"
    ) in rendered
    assert len(rendered) == 4


@pytest.mark.parametrize("item", ['""', "Bad_Name", "{service: 'a b'}"])
def test_dependency_that_cannot_be_a_service_name(item):
    problems = _problems(f"name: a\ncommand: /bin/true\ndepends: [{item}]\n")
    assert len(problems) == 1 and "is not a service name" in problems[0], problems


# -- machine config --------------------------------------------------------------------------


def _config_text(**machine) -> str:
    from libtalos.yamlio import dump

    data = base_config("controlplane")
    network = machine.pop("network", {})
    data["machine"]["network"] = {"hostname": "cp-1", **network}
    data["machine"].update(machine)
    return dump(data)


GOOD = _config_text(
    files=[{"content": "hello", "permissions": 0o600, "path": "/var/etc/hello", "op": "create"}],
    sysctls={"net.ipv4.ip_forward": "1"},
)


def test_config_parse_picks_what_init_applies():
    config = configsource.parse(GOOD, "c.yaml")
    assert (config.machine_type, config.hostname) == ("controlplane", "cp-1")
    assert config.files[0].path == "/var/etc/hello"
    assert config.files[0].permissions == 0o600
    assert config.sysctls == {"net.ipv4.ip_forward": "1"}


def _line(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_config_problems_carry_lines():
    # The model (libtalos.config) finds structural problems, with lines.
    text = GOOD.replace("version: v1alpha1", "version: v1").replace(
        "path: /var/etc/hello", "path: 7"
    )
    with pytest.raises(DocumentError) as info:
        configsource.parse(text, "c.yaml")
    rendered = [p.render() for p in info.value.problems]
    assert any(r.startswith("c.yaml:1 document 1: version") for r in rendered), rendered
    # The rules on what talos-init applies (the file path it will write) name key and line too.
    text = GOOD.replace("path: /var/etc/hello", "path: relative/hello")
    with pytest.raises(DocumentError) as info:
        configsource.parse(text, "c.yaml")
    line = _line(text, "path: relative/hello")
    assert [p.render() for p in info.value.problems] == [
        f"c.yaml:{line} document 1: machine.files[0].path: must be an absolute path"
    ]


def test_uuid_and_cmdline():
    assert configsource.expand_url("http://h/c?uuid=", "U-1") == "http://h/c?uuid=U-1"
    assert configsource.expand_url("http://h/c?uuid=set", "U-1") == "http://h/c?uuid=set"
    assert configsource.expand_url("http://h/c", "U-1") == "http://h/c"
    params = configsource.parse_cmdline("slab_nomerge pti=on talos.config=http://x/?a=b panic=0")
    assert params == {
        "slab_nomerge": "",
        "pti": "on",
        "talos.config": "http://x/?a=b",
        "panic": "0",
    }


def test_fetch_file_plain_and_gzip_and_errors(tmp_path):
    plain = tmp_path / "c.yaml"
    plain.write_text(GOOD)
    zipped = tmp_path / "c.yaml.gz"
    zipped.write_bytes(gzip.compress(GOOD.encode()))
    assert configsource.fetch(f"file://{plain}") == GOOD
    assert configsource.fetch(f"file://{zipped}") == GOOD
    with pytest.raises(configsource.ConfigFetchError, match="no-such: cannot read"):
        configsource.fetch(f"file://{tmp_path}/no-such")
    with pytest.raises(configsource.ConfigFetchError, match="unsupported scheme"):
        configsource.fetch("ftp://127.0.0.1/c.yaml")


def test_persist_is_0600_and_replaces(tmp_path):
    config = configsource.parse(GOOD, "c.yaml")
    os.umask(0o022)
    path = configsource.persist(tmp_path, config)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert configsource.load_persisted(tmp_path) is not None
    assert configsource.load_persisted(tmp_path / "empty") is None
    (tmp_path / ".config.yaml.123.tmp").write_text("partial")
    assert configsource.remove_stale_temp(tmp_path) == 1


# -- sequencer -------------------------------------------------------------------------------


def test_sequencer_logs_talos_lines_and_stops_on_failure(tmp_path):
    out = tmp_path / "console"
    fd = os.open(out, os.O_WRONLY | os.O_CREAT, 0o600)
    console = Console(fd)
    ran = []

    async def ok() -> None:
        ran.append("ok")

    async def boom() -> None:
        raise configsource.ConfigFetchError("http://x: cannot fetch")

    async def never() -> None:
        ran.append("never")

    seq = Sequencer(console)
    phases = [Phase("one", [("first", ok), ("second", boom)]), Phase("two", [("third", never)])]
    with pytest.raises(TaskFailedError) as info:
        asyncio.run(seq.run("boot", phases))
    os.close(fd)
    assert ran == ["ok"]
    assert (info.value.phase, info.value.task) == ("one", "second")
    lines = out.read_text().splitlines()
    assert lines[0] == "[talos] boot sequence: 2 phase(s)"
    assert lines[1] == "[talos] phase one (1/2): 2 tasks(s)"
    assert lines[2] == "[talos] task first (1/2): starting"
    assert lines[3].startswith("[talos] task first (1/2): done, ")
    assert lines[5] == "[talos] task second (2/2): failed, http://x: cannot fetch"
    assert (
        duration(0.0000123) == "12µs" and duration(0.0123) == "12.3ms" and duration(2.5) == "2.5s"
    )


# -- spawn and reaper ------------------------------------------------------------------------

SIGSTATE = """\
import os, signal, subprocess, sys
sys.path[:0] = {paths!r}
from talos_init.spawn import spawn
signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals() - {{signal.SIGKILL, signal.SIGSTOP}})
signal.signal(signal.SIGTTIN, signal.SIG_IGN)
argv = ["grep", "-E", "^Sig(Blk|Ign):", "/proc/self/status"]
print("subprocess", subprocess.run(argv, capture_output=True, text=True).stdout.split(), flush=True)
r, w = os.pipe()
pid = spawn(argv, stdout=w)
os.close(w)
os.waitpid(pid, 0)
print("spawn", os.read(r, 4096).decode().split(), flush=True)
"""


def test_spawn_gives_a_clean_mask_where_subprocess_inherits_ours():
    out = subprocess.run(
        [sys.executable, "-c", SIGSTATE.format(paths=sys.path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    sub = ast.literal_eval(out[0].split("subprocess ", 1)[1])
    ours = ast.literal_eval(out[1].split("spawn ", 1)[1])
    # The trap (negative control): subprocess's child keeps our blocked mask and SIGTTIN ignored.
    assert sub[0] == "SigBlk:" and int(sub[1], 16) != 0
    assert sub[2] == "SigIgn:" and int(sub[3], 16) & (1 << (signal.SIGTTIN - 1))
    assert ours == ["SigBlk:", "0000000000000000", "SigIgn:", "0000000000000000"]


def test_spawn_errors_use_shell_codes(tmp_path):
    with pytest.raises(SpawnError) as missing:
        spawn([str(tmp_path / "nope")])
    assert missing.value.code == EXIT_NOT_FOUND
    script = tmp_path / "not-exec"
    script.write_text("#!/bin/sh\n")
    with pytest.raises(SpawnError) as denied:
        spawn([str(script)])
    assert denied.value.code == EXIT_NOT_EXECUTABLE


def test_exit_code_conventions():
    assert exit_code(3 << 8) == 3
    assert exit_code(signal.SIGKILL) == 137
    assert describe(signal.SIGTERM) == "killed by SIGTERM"
    assert describe(1 << 8) == "exited with code 1"


# -- supervisor on demand (the API's seam) ---------------------------------------------------


def _status(sup: Supervisor) -> list[dict[str, object]]:
    """One row per service from the supervisor's public state (what a service list shows)."""
    return [
        {
            "id": s.spec.id,
            "state": str(s.state),
            "health": {None: "?", True: "OK", False: "Fail"}[s.healthy],
            "pid": s.pid,
            "message": s.events[-1].message if s.events else "",
        }
        for s in sup.services.values()
    ]


def _events(sup: Supervisor, sid: str) -> list[Event]:
    return list(sup.get(sid).events)


def test_start_stop_restart_one_service_and_its_log(tmp_path):
    fd = os.open(tmp_path / "console", os.O_WRONLY | os.O_CREAT, 0o600)

    async def scenario() -> list[str]:
        reaper = Reaper(reap_orphans=False)  # only our own children: pytest's stay pytest's
        sup = Supervisor(reaper, Console(fd))

        async def reap_forever() -> None:
            while True:
                reaper.reap()
                await asyncio.sleep(0.005)

        reaping = asyncio.create_task(reap_forever())
        script = 'trap "echo bye; exit 0" TERM; echo "hello $$"; while :; do sleep 0.05; done'
        sup.add(ServiceSpec(id="talker", argv=("/bin/sh", "-c", script), stop_grace=5.0))
        sup.start("talker")
        while not sup.log("talker").lines():
            await sup.changed(0.05)
        assert _status(sup)[0]["state"] == "Running"
        await sup.restart("talker")
        while sum(x.startswith("hello") for x in sup.log("talker").lines()) < 2:
            await sup.changed(0.05)
        await sup.stop("talker")
        assert sup.get("talker").state == State.FINISHED
        reaping.cancel()
        events = [f"{e.state}: {e.message}" for e in _events(sup, "talker")]
        return events + sup.log("talker").lines()

    lines = asyncio.run(scenario())
    os.close(fd)
    assert lines.count("Finished: Service stopped") == 2
    assert sum(line.startswith("Running: Started process with PID") for line in lines) == 2
    assert sum(line.startswith("hello ") for line in lines) == 2, "\n".join(lines)
    assert lines.count("bye") == 2


def test_interfaces_parse_and_problems():
    interfaces = [
        {
            "interface": "eth0",
            "cidr": "10.5.0.2/24",
            "routes": [{"network": "0.0.0.0/0", "gateway": "10.5.0.1"}],
        },
        {
            "interface": "eth1",
            "cidr": "10.5.0.3/24",
            "mtu": 20,
            "routes": [{"network": "10.0.0.0/8", "gateway": "nope"}],
        },
    ]
    text = _config_text(network={"interfaces": interfaces})
    with pytest.raises(DocumentError) as info:
        configsource.parse(text, "n.yaml")
    gateway = _line(text, "gateway: nope")
    mtu = _line(text, "mtu: 20")
    assert [p.render() for p in info.value.problems] == [
        f"n.yaml:{mtu} document 1: machine.network.interfaces[1].mtu: must be between 68 and 65535",
        f"n.yaml:{gateway} document 1: machine.network.interfaces[1].routes[0].gateway: "
        "must be an IPv4 or IPv6 address",
    ]  # the model's validation: every problem at once, in document order
    interfaces[1]["routes"] = []
    text = _config_text(network={"interfaces": interfaces})
    with pytest.raises(DocumentError) as info:
        configsource.parse(text, "n.yaml")
    mtu = _line(text, "mtu: 20")
    assert [p.render() for p in info.value.problems] == [
        f"n.yaml:{mtu} document 1: machine.network.interfaces[1].mtu: must be between 68 and 65535"
    ]
    good = configsource.parse(_config_text(network={"interfaces": interfaces[:1]}), "n.yaml")
    (eth0,) = good.interfaces
    assert (eth0.interface, eth0.cidr, eth0.routes[0].gateway) == (
        "eth0",
        "10.5.0.2/24",
        "10.5.0.1",
    )
