"""The rendered etcd command line and certificates run the real etcd 3.4 (Debian's etcd-server).

On loopback only: a new one-member cluster on 127.0.0.1, then a second member on 127.0.0.2 that
joins it with ``member add`` and ``initial-cluster-state=existing``; etcdctl talks mutual TLS
with the rendered client certificate, and is refused without it (the negative control).
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from libtalos.k8s.etcd import EtcdArgs, etcd_command, issue_etcd_certs
from libtalos.secrets import SecretsBundle

pytestmark = pytest.mark.etcd

ETCD = shutil.which("etcd")
ETCDCTL = shutil.which("etcdctl")


def _free_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Member:
    def __init__(self, root: Path, bundle: SecretsBundle, name: str, ip: str) -> None:
        self.name, self.ip = name, ip
        self.pki = root / name / "pki"
        self.pki.mkdir(parents=True)
        # etcd checks a peer's client certificate against the connection's source address; on
        # loopback the kernel picks 127.0.0.1 as the source for every 127/8 destination, so each
        # member's certificate also names 127.0.0.1 (on a cluster node, its own IP is the source).
        ips = list(dict.fromkeys([ip, "127.0.0.1"]))
        certs = issue_etcd_certs(bundle.etcd_ca, hostname=name, ips=ips)
        for fname, (data, mode) in certs.files().items():
            (self.pki / fname).write_bytes(data)
            (self.pki / fname).chmod(mode)
        self.data = root / name / "data"
        self.client_port = _free_port(ip)
        self.peer_port = _free_port(ip)
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = root / name / "etcd.log"

    def args(self, **kw: object) -> EtcdArgs:
        return EtcdArgs(
            name=self.name,
            advertise_ip=self.ip,
            listen_ip=self.ip,
            data_dir=str(self.data),
            pki_dir=str(self.pki),
            binary=str(ETCD),
            client_port=self.client_port,
            peer_port=self.peer_port,
            **kw,  # type: ignore[arg-type]
        )

    def start(self, argv: list[str]) -> None:
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)

    def ctl(self, *args: str, tls: bool = True) -> subprocess.CompletedProcess[str]:
        cmd = [
            str(ETCDCTL),
            f"--endpoints=https://{self.ip}:{self.client_port}",
            "--dial-timeout=2s",
        ]
        cmd.append(f"--cacert={self.pki / 'ca.crt'}")
        if tls:
            cmd += [f"--cert={self.pki / 'client.crt'}", f"--key={self.pki / 'client.key'}"]
        return subprocess.run(
            [*cmd, *args],
            capture_output=True,
            text=True,
            check=False,
            timeout=30,
            env={"ETCDCTL_API": "3", "PATH": "/usr/bin:/bin"},
        )

    def wait_healthy(self, bound: float = 30.0) -> None:
        deadline = time.monotonic() + bound
        while True:
            done = self.ctl("endpoint", "health")
            if done.returncode == 0:
                return
            assert self.proc is not None and self.proc.poll() is None, self.log.read_text()[-2000:]
            if time.monotonic() > deadline:
                pytest.fail(
                    f"{self.name} not healthy: {done.stderr}\n{self.log.read_text()[-2000:]}"
                )
            time.sleep(0.2)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture
def members(tmp_path: Path, bundle: SecretsBundle) -> Iterator[list[Member]]:
    if ETCD is None or ETCDCTL is None:
        pytest.skip("etcd and etcdctl are needed (Debian packages etcd-server, etcd-client)")
    made = [
        Member(tmp_path, bundle, "demo-master-1", "127.0.0.1"),
        Member(tmp_path, bundle, "demo-master-2", "127.0.0.2"),
    ]
    try:
        yield made
    finally:
        for m in made:
            m.stop()


def test_bootstrap_then_join(members: list[Member]) -> None:
    first, second = members
    first.start(etcd_command(first.args()))
    first.wait_healthy()
    # negative control: without the client certificate the server refuses us
    refused = first.ctl("endpoint", "health", tls=False)
    assert refused.returncode != 0

    peer = f"https://{second.ip}:{second.peer_port}"
    added = first.ctl("member", "add", second.name, f"--peer-urls={peer}", "-w", "json")
    assert added.returncode == 0, added.stderr
    listed = json.loads(added.stdout)["members"]
    initial = {(m.get("name") or second.name): m["peerURLs"] for m in listed}
    second.start(etcd_command(second.args(state="existing", initial_cluster=initial)))
    second.wait_healthy()
    out = second.ctl("member", "list", "-w", "json")
    assert out.returncode == 0, out.stderr
    names = sorted(m.get("name", "") for m in json.loads(out.stdout)["members"])
    assert names == ["demo-master-1", "demo-master-2"]
    put = second.ctl("put", "k", "v")
    assert put.returncode == 0, put.stderr
    got = first.ctl("get", "k", "--print-value-only")
    assert got.stdout.strip() == "v"
